import ArgumentParser
import Foundation
import VaultCore

@main
struct Vaultctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vaultctl",
        abstract: "Back up servers' disks into a vaultfs repository, on a schedule or now, and manage what is kept.",
        discussion: """
            Tables and messages show times in local time with its offset; --utc, anywhere on the command line, \
            shows them in UTC. JSON gives UTC. Times given (--now, --since) are local unless they end in Z. \
            Shell completion: vaultctl --generate-completion-script bash|zsh|fish.
            """,
        version: "vaultctl 0.1.0",
        subcommands: [
            Init.self, VaultCommand.self, ServerCommand.self, Backup.self, PolicyCommand.self,
            ScheduleCommand.self, RetentionCommand.self, Points.self, History.self, Delete.self,
            Undelete.self, Purge.self, Export.self, Restore.self, Verify.self, Collect.self, Repair.self, Info.self,
            KeyCommand.self,
            FilesCommand.self,
            SyncCommand.self, CopyCommand.self, LocationCommand.self, Serve.self,
        ])

    /// Accepts the options every command shares before the subcommand too, at any level, as
    /// git and restic do: `vaultctl -R /srv/backups points`, `vaultctl vault -R X list`,
    /// `vaultctl --json points`. `-R/--repo` there is the repository of every subcommand
    /// (the last one given wins); the others are moved after the subcommand, which takes
    /// them or says it does not.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments == ["-V"] { arguments = ["--version"] }
        if let repository = takeRepository(&arguments) { setenv("VAULT_REPO", repository, 1) }
        // --utc, anywhere before a `--`: every table and line shows times in UTC.
        let options = arguments.prefix { $0 != "--" }
        if options.contains("--utc") {
            setenv("VAULT_UTC", "1", 1)
            arguments = options.filter { $0 != "--utc" } + arguments[options.endIndex...]
        }
        arguments = arranged(arguments)
        if let verb = arguments.first, let instead = familiarVerbs[verb] {
            FileHandle.standardError.write(
                Data("Error: vaultctl has no '\(verb)' command; \(instead) (see vaultctl --help)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        main(arguments)
    }

    /// Commands of borg and restic, and what does their job here.
    static let familiarVerbs: [String: String] = [
        "list": "'vaultctl points' lists points ('vault list', 'server list' the rest)",
        "ls": "'vaultctl points' lists points; 'vaultctl files ls POINT PATH' lists files in one",
        "snapshots": "'vaultctl points' lists them",
        "check": "'vaultctl verify' checks every chunk and map",
        "prune": "'vaultctl retention apply' keeps what policies say, then 'vaultctl purge' and 'vaultctl gc'",
        "forget": "'vaultctl delete' soft-deletes points",
        "compact": "'vaultctl gc' frees unused chunks",
        "extract": "'vaultctl export' writes a disk, 'vaultctl files get' files from one",
        "create": "'vaultctl backup SERVER' backs up now",
        "mount": "mount with 'vaultfs REPOSITORY MOUNTPOINT'",
    ]

    /// Shared options other than `-R/--repo`, and whether each takes a value.
    static let sharedOptions: [String: Bool] = [
        "--json": false, "--progress": true, "--state-dir": true, "--key-file": true, "--endpoint": true,
        "--region": true, "--passphrase-fd": true, "--location": true,
    ]

    /// How many of the leading `arguments` name subcommands or shared options: where the
    /// subcommand's own arguments start.
    private static func leadingPath(_ arguments: [String], each: (Int, _ isOption: Bool, _ width: Int) -> Void) {
        var command: any ParsableCommand.Type = Vaultctl.self
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            let name = String(argument.split(separator: "=", maxSplits: 1).first ?? "")
            if let sub = command.configuration.subcommands.first(where: { $0._commandName == argument }) {
                each(i, false, 1)
                command = sub
                i += 1
                if sub.configuration.subcommands.isEmpty { return }
                continue
            }
            let takesValue: Bool
            if ["-R", "--repo"].contains(name) {
                takesValue = true
            } else if let known = sharedOptions[name] {
                takesValue = known
            } else {
                return
            }
            let width = takesValue && !argument.contains("=") && i + 1 < arguments.count ? 2 : 1
            each(i, true, width)
            i += width
        }
    }

    /// Removes every `-R X`, `--repo X` and `--repo=X` before the subcommand's own
    /// arguments; returns the last value.
    static func takeRepository(_ arguments: inout [String]) -> String? {
        var found: [(index: Int, width: Int)] = []
        leadingPath(arguments) { index, isOption, width in
            let name = arguments[index]
            if isOption && (name == "-R" || name == "--repo" || name.hasPrefix("--repo=")) {
                found.append((index, width))
            }
        }
        var value: String?
        for (index, width) in found.reversed() {
            let argument = arguments[index]
            if value == nil {
                value = width == 2 ? arguments[index + 1] : String(argument.dropFirst("--repo=".count))
            }
            arguments.removeSubrange(index..<(index + width))
        }
        return value
    }

    /// `arguments` with the shared options given before the subcommand moved after it
    /// (before a `--`, so they stay options).
    static func arranged(_ arguments: [String]) -> [String] {
        var path: [String] = []
        var moved: [String] = []
        var end = 0
        leadingPath(arguments) { index, isOption, width in
            if isOption {
                moved += arguments[index..<(index + width)]
            } else {
                path.append(arguments[index])
            }
            end = index + width
        }
        var rest = Array(arguments[end...])
        rest.insert(contentsOf: moved, at: rest.firstIndex(of: "--") ?? rest.endIndex)
        return path + rest
    }
}

/// The repository a command opens: `-R/--repo PATH` or `VAULT_REPO`; else, with a locations
/// file, `--location NAME`, the location that holds what the command names, or the default.
struct RepositoryOptions: ParsableArguments {
    @Option(
        name: [.customShort("R"), .customLong("repo")],
        help: "The repository (default: $VAULT_REPO, else a location: see vaultctl location --help).")
    var repo: String?
    @Option(
        name: .customLong("location"),
        help: "The named location to use instead of the one holding what the command names, or the default.")
    var locationName: String?

    /// The repository `-R` or `VAULT_REPO` pins, if one does.
    private var pinned: String? {
        let path = repo ?? ProcessInfo.processInfo.environment["VAULT_REPO"]
        return path?.isEmpty == false ? path : nil
    }

    /// The named location this command uses, or nil when `-R`/`VAULT_REPO` pins a repository:
    /// `--location`, else the location that holds `subject`, else the default.
    func namedLocation(for subject: Locations.Subject? = nil) throws -> Location? {
        if pinned != nil {
            if locationName != nil {
                throw VaultError(.invalidArgument, "give -R/--repo (or VAULT_REPO) or --location, not both")
            }
            return nil
        }
        guard let locations = try Locations.load() else {
            if let locationName {
                throw VaultError(
                    .notFound,
                    "no location named '\(locationName)': \(Locations.path()) does not exist (add one with 'vaultctl location add')"
                )
            }
            throw VaultError(
                .invalidArgument,
                "no repository given: use -R/--repo PATH, set VAULT_REPO, or name one with 'vaultctl location add NAME PATH'"
            )
        }
        if let locationName { return try locations.named(locationName) }
        if let subject, let holder = try locations.holding(subject, unlock: unlock) { return holder }
        guard let location = locations.defaultLocation else {
            throw VaultError(
                .invalidArgument, "\(locations.path) names no location; use -R/--repo PATH or 'vaultctl location add'")
        }
        return location
    }

    @Option(help: "The key file of an encrypted repository made with --key-file (default: $VAULT_KEY_FILE).")
    var keyFile: String?
    @Option(
        help: """
            Read the passphrase of an encrypted repository from this file descriptor. Without it, the passphrase \
            is $VAULT_PASSPHRASE, else the first line of the file $VAULT_PASSPHRASE_FILE names, else a systemd \
            credential named passphrase, else asked for on a terminal.
            """)
    var passphraseFd: Int32?

    /// How to unlock the repository if it is encrypted, when no location says; the passphrase
    /// is read only then.
    var unlock: Unlock {
        if let file = keyFile ?? ProcessInfo.processInfo.environment["VAULT_KEY_FILE"], !file.isEmpty {
            return .keyFile(file)
        }
        let fd = passphraseFd
        return .passphrase { try Passphrase.read(fd: fd) }
    }

    @OptionGroup var store: StoreOptions

    /// Refuses `subject` as a new name when a location holds it already (names are unique
    /// across locations). Nothing to check here when `-R` pins one repository.
    func checkNew(_ subject: Locations.Subject) throws {
        guard pinned == nil, let locations = try Locations.load() else { return }
        try locations.checkNew(subject, unlock: unlock)
    }

    /// Opens the repository to make or back up something in, for a command that names
    /// `subject`: refused in a mirror location, which takes copies only.
    func openToWrite(_ subject: Locations.Subject? = nil) throws -> Repository {
        if let named = try namedLocation(for: subject), let locations = try Locations.load() {
            try locations.checkTakesBackups(named.name)
        }
        return try open(subject)
    }

    /// Where the repository is and how to unlock it, for a command that names `subject`.
    func target(for subject: Locations.Subject? = nil) throws -> (location: RepositoryLocation, unlock: Unlock) {
        if let named = try namedLocation(for: subject) {
            let given = keyFile != nil || passphraseFd != nil
            return (
                try named.repositoryLocation(
                    endpoint: store.endpoint, region: store.region, stateDirectory: store.stateDir),
                given ? unlock : named.unlock(else: unlock)
            )
        }
        return (try store.location(of: pinned ?? ""), unlock)
    }

    /// The repositories a scheduler serves: the one `-R`, `VAULT_REPO` or `--location` names,
    /// else every location (named), else the error `open` gives.
    func scheduledTargets() throws -> [(name: String?, location: RepositoryLocation, unlock: Unlock)] {
        if pinned == nil, locationName == nil, let locations = try Locations.load(), !locations.entries.isEmpty {
            let given = keyFile != nil || passphraseFd != nil
            return try locations.entries.map {
                (
                    $0.name,
                    try $0.repositoryLocation(
                        endpoint: store.endpoint, region: store.region, stateDirectory: store.stateDir),
                    given ? unlock : $0.unlock(else: unlock)
                )
            }
        }
        let target = try target()
        return [(try namedLocation()?.name, target.location, target.unlock)]
    }

    /// Runs `body` on each repository a listing covers: the one `-R`, `VAULT_REPO` or
    /// `--location` names, else every location, with its name. A location that cannot be
    /// opened is named in a warning and passed over. Returns whether the listing covers the
    /// locations (then each is named), and whether every one could be read: the caller lists
    /// what it has, then exits 1 when one could not.
    func eachRepository(_ body: (Repository, _ location: String?) throws -> Void) throws -> (
        locations: Bool, complete: Bool
    ) {
        let targets = try scheduledTargets()
        guard locationName == nil, targets.allSatisfy({ $0.name != nil }) else {
            try body(try open(), nil)
            return (false, true)
        }
        var complete = true
        for target in targets {
            do {
                try body(try Repository(location: target.location, unlock: target.unlock), target.name)
            } catch let error as VaultError {
                warn("location \(target.name ?? target.location.name) is not listed: \(error.message)")
                complete = false
            }
        }
        return (true, complete)
    }

    func location(for subject: Locations.Subject? = nil) throws -> RepositoryLocation {
        try target(for: subject).location
    }

    /// Opens the repository for a command that names `subject` (see `namedLocation`).
    func open(_ subject: Locations.Subject? = nil) throws -> Repository {
        let target = try target(for: subject)
        let repository = try Repository(location: target.location, unlock: target.unlock)
        if !repository.config.isEncrypted && (keyFile != nil || passphraseFd != nil) {
            warn(
                "\(keyFile != nil ? "--key-file" : "--passphrase-fd") is for encrypted repositories; \(repository.location.name) is not, so it was not used"
            )
        }
        return repository
    }
}

/// How to reach a repository in S3 (`s3://BUCKET/PREFIX`); credentials come from
/// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones) or
/// ~/.aws/credentials, never from options.
struct StoreOptions: ParsableArguments {
    @Option(help: "The S3 endpoint of an s3:// repository (default: $VAULT_S3_ENDPOINT).") var endpoint: String?
    @Option(help: "The S3 region (default: $AWS_REGION, else us-east-1).") var region: String?
    @Option(
        help:
            "The local state folder of an s3:// repository: its catalog and locks (default: $VAULT_STATE_DIR, else /var/lib/vaultfs/s3/... for root, ~/.local/state/vaultfs/s3/... for others)."
    )
    var stateDir: String?

    func location(of path: String) throws -> RepositoryLocation {
        let location = try RepositoryLocation.parse(path, endpoint: endpoint, region: region, stateDirectory: stateDir)
        if case .directory = location {
            for (option, given) in [("--endpoint", endpoint), ("--region", region), ("--state-dir", stateDir)]
            where given != nil {
                warn("\(option) is for s3:// repositories; \(location.name) is a folder, so it was not used")
            }
        }
        return location
    }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a new, empty repository.")

    @Argument(help: "Directory to create the repository in (new or empty), or s3://BUCKET/PREFIX.") var path: String
    @OptionGroup var store: StoreOptions
    @Option(help: "Chunk size, a power of two from 64K to 4M.") var chunkSize = "1M"
    @Option(help: "zstd compression level, 1-19: 1 is the fastest, higher levels store a little less.")
    var compressionLevel = 1
    @Option(help: "Let this group read the repository (default: only its owner can).") var group: String?
    @Option(help: "aes-256-gcm, or none (the default): encrypt chunks, maps and manifests.") var encryption = "none"
    @Option(help: "With encryption: write the key to this new file instead of wrapping it with a passphrase.")
    var keyFile: String?
    @Option(
        help:
            "Read the new passphrase from this file descriptor (else $VAULT_PASSPHRASE, $VAULT_PASSPHRASE_FILE, or asked for twice on a terminal)."
    ) var passphraseFd: Int32?
    @Option(
        help:
            "How long gc leaves an unused chunk before removing it, e.g. 12h (default: 0 in a folder, 1d in a bucket; longer than your longest backup)."
    )
    var gcGrace: String?

    func run() throws {
        guard let size = Units.parseSize(chunkSize) else {
            throw VaultError(.invalidArgument, "bad chunk size '\(chunkSize)'")
        }
        let protection: Repository.Encryption
        switch (encryption, keyFile) {
        case ("none", nil): protection = .none
        case ("none", _): throw VaultError(.invalidArgument, "--key-file needs --encryption aes-256-gcm")
        case (RepositoryConfig.cipher, let file?): protection = .keyFile(file)
        case (RepositoryConfig.cipher, nil):
            let passphrase = try Passphrase.read(fd: passphraseFd, prompt: "New passphrase: ", forNewRepository: true)
            if ProcessInfo.processInfo.environment["VAULT_PASSPHRASE"] == nil && isatty(STDIN_FILENO) == 1
                && passphraseFd == nil,
                try Passphrase.read(prompt: "Repeat it: ") != passphrase
            {
                throw VaultError(.invalidArgument, "the passphrases differ; nothing was created")
            }
            protection = .passphrase(passphrase)
        default: throw VaultError(.invalidArgument, "unknown encryption '\(encryption)': use aes-256-gcm or none")
        }
        let grace = try gcGrace.map(Units.durationArgument)
        let repository = try Repository.create(
            at: try store.location(of: path), chunkSize: size, compressionLevel: compressionLevel, group: group,
            encryption: protection, gcGrace: grace)
        let what =
            protection == .none
            ? "not encrypted" : "encrypted with aes-256-gcm" + (keyFile.map { ", key in \($0)" } ?? "")
        print(
            "created repository \(repository.location.name) (chunk size \(Units.formatSize(Int64(size))), zstd level \(compressionLevel), \(what))"
        )
        if case .passphrase = protection {
            // As borg does: the passphrase opens the key kept in repository.json, which a
            // damaged or lost file takes with it.
            FileHandle.standardError.write(
                Data(
                    "keep a copy of the key apart from the repository: 'vaultctl -R \(repository.location.name) key export FILE' (it opens the repository with --key-file even if repository.json is lost)\n"
                        .utf8))
        }
    }
}

/// A warning on stderr: the command goes on.
func warn(_ text: String) {
    FileHandle.standardError.write(Data("warning: \(text)\n".utf8))
}
