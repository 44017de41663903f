import ArgumentParser
import Foundation
import VaultCore

struct LocationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "location",
        abstract: "Name repositories (folders or s3://) as locations, in locations.toml; one is the default.",
        discussion: """
            The file is $VAULT_CONFIG, else locations.toml in $VAULT_CONFIG_DIR, else /etc/vaultfs/locations.toml. \
            Without it, -R/--repo or $VAULT_REPO names the repository, as before. With it, a command that names a \
            vault, server or point uses the location holding it; other commands use the default location, or the one \
            --location names; -R still pins one repository.
            """,
        subcommands: [Add.self, List.self, Show.self, Default.self, Remove.self])

    /// The locations file, or an error saying there is none.
    static func existing() throws -> Locations {
        guard let locations = try Locations.load() else {
            throw VaultError(
                .notFound,
                "there are no locations: \(Locations.path()) does not exist (add one with 'vaultctl location add')")
        }
        return locations
    }

    /// A passphrase as every command takes one, for a location that names neither a key
    /// file nor a passphrase file and whose catalog must come from its bucket.
    static let askedPassphrase = Unlock.passphrase { try Passphrase.read() }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Name an existing repository as a location (the first one is the default), or make a mirror one.")
        @Argument(help: "The location's name: letters, digits, '-' and '_'.") var name: String
        @Argument(help: "The repository: a folder made with 'vaultctl init', or s3://BUCKET/PREFIX.") var repository:
            String
        @Option(help: "The S3 endpoint of an s3:// repository.") var endpoint: String?
        @Option(help: "The S3 region of an s3:// repository.") var region: String?
        @Option(help: "The local state folder of an s3:// repository.") var stateDir: String?
        @Option(help: "The key file of an encrypted repository.") var keyFile: String?
        @Option(help: "A file whose first line is the passphrase of an encrypted repository.") var passphraseFile:
            String?
        @Flag(help: "Make it the default location.") var `default` = false
        @Option(
            help:
                "Make a new folder or s3:// prefix the mirror of this location's repository (the same id and key), to take its vaults' copies ('vault set --copy-to')."
        )
        var mirrorOf: String?

        func run() throws {
            var locations = try Locations.load() ?? Locations.empty()
            let absolute = { (path: String?) in path.map(Posix.absolutePath) }
            try locations.add(
                Location(
                    name: name, repository: repository, endpoint: endpoint, region: region,
                    stateDir: absolute(stateDir), keyFile: absolute(keyFile), passphraseFile: absolute(passphraseFile)),
                makeDefault: self.default, mirrorOf: mirrorOf)
            try locations.save()
            let isDefault = locations.defaultLocation?.name == name
            print("added location \(name) (\(try locations.named(name).repository))\(isDefault ? ", the default" : "")")
        }
    }

    struct LocationView: Encodable {
        var name: String
        var repository: String
        var isDefault: Bool
        var endpoint: String?
        var region: String?
        var stateDir: String?
        var keyFile: String?
        var passphraseFile: String?
        /// With `show`: the vaults it holds.
        var vaults: [String]?

        init(_ location: Location, isDefault: Bool, vaults: [String]? = nil) {
            name = location.name
            repository = location.repository
            self.isDefault = isDefault
            endpoint = location.endpoint
            region = location.region
            stateDir = location.stateDir
            keyFile = location.keyFile
            passphraseFile = location.passphraseFile
            self.vaults = vaults
        }

        enum CodingKeys: String, CodingKey {
            case name, repository, isDefault = "default", endpoint, region, stateDir, keyFile, passphraseFile, vaults
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the locations.")
        @Flag var json = false

        func run() throws {
            let locations = try Locations.load() ?? Locations.empty()
            let views = locations.entries.map {
                LocationView($0, isDefault: $0.name == locations.defaultLocation?.name)
            }
            if json { return printJSON(views) }
            if views.isEmpty {
                return print("no locations (\(locations.path) does not exist); commands use -R/--repo or $VAULT_REPO")
            }
            printTable(
                ["LOCATION", "DEFAULT", "REPOSITORY"],
                views.map { [$0.name, $0.isDefault ? "yes" : "", $0.repository] })
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a location and the vaults it holds.")
        @Argument(help: "The location.") var name: String
        @Flag var json = false

        func run() throws {
            let locations = try LocationCommand.existing()
            let location = try locations.named(name)
            let vaults = try location.vaultNames(unlock: LocationCommand.askedPassphrase)
            let view = LocationView(
                location, isDefault: location.name == locations.defaultLocation?.name, vaults: vaults)
            if json { return printJSON(view) }
            print("location:   \(view.name)\(view.isDefault ? " (the default)" : "")")
            print("repository: \(view.repository)")
            for (label, value) in [
                ("endpoint", view.endpoint), ("region", view.region), ("state dir", view.stateDir),
                ("key file", view.keyFile), ("passphrase file", view.passphraseFile),
            ] {
                if let value { print("\((label + ":").padding(toLength: 12, withPad: " ", startingAt: 0))\(value)") }
            }
            print("vaults:     \(vaults.isEmpty ? "none" : vaults.joined(separator: ", "))")
        }
    }

    struct Default: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "default", abstract: "Make a location the default.")
        @Argument(help: "The location.") var name: String

        func run() throws {
            var locations = try LocationCommand.existing()
            try locations.setDefault(name)
            try locations.save()
            print("location \(name) is the default")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a location that holds no vault (its repository stays as it is).")
        @Argument(help: "The location.") var name: String

        func run() throws {
            var locations = try LocationCommand.existing()
            let repository = try locations.named(name).repository
            try locations.remove(named: name, unlock: LocationCommand.askedPassphrase)
            try locations.save()
            print("removed location \(name); its repository \(repository) is as it was")
        }
    }
}
