import Foundation
import Glibc

/// A named repository of the locations file: where it is and how to open it.
public struct Location: Sendable, Equatable, Codable {
    public var name: String
    /// A folder, or `s3://BUCKET/PREFIX`.
    public var repository: String
    /// The S3 endpoint, region and local state folder of an `s3://` repository.
    public var endpoint: String?
    public var region: String?
    public var stateDir: String?
    /// How an encrypted repository is unlocked: its key file, or a file whose first line is
    /// its passphrase. Neither: the passphrase comes as for `-R` (VAULT_PASSPHRASE, a prompt).
    public var keyFile: String?
    public var passphraseFile: String?
    /// The location this one is the mirror of (`location add --mirror-of`): it takes that
    /// location's copies only, so nothing is backed up, made or deleted there but by a copy.
    public var mirrorOf: String?

    public init(
        name: String, repository: String, endpoint: String? = nil, region: String? = nil, stateDir: String? = nil,
        keyFile: String? = nil, passphraseFile: String? = nil, mirrorOf: String? = nil
    ) {
        self.mirrorOf = mirrorOf
        self.name = name
        self.repository = repository
        self.endpoint = endpoint
        self.region = region
        self.stateDir = stateDir
        self.keyFile = keyFile
        self.passphraseFile = passphraseFile
    }

    /// Checks its name and fields: each non-empty, at most 4096 bytes, without control
    /// characters; the repository a folder or `s3://`.
    func validate() throws {
        try Names.validateVaultOrServer(name, what: "location")
        if let mirrorOf { try Names.validateVaultOrServer(mirrorOf, what: "location") }
        for (field, value) in [
            ("repository", repository), ("endpoint", endpoint), ("region", region), ("state-dir", stateDir),
            ("key-file", keyFile), ("passphrase-file", passphraseFile),
        ] {
            guard let value else { continue }
            guard !value.isEmpty, value.utf8.count <= 4096, !value.unicodeScalars.contains(where: { $0.value < 0x20 })
            else {
                throw VaultError.invalid(
                    "bad \(field) for location '\(name)': empty, longer than 4096 bytes or with control characters")
            }
        }
    }

    /// Where its repository is; `endpoint`, `region` and `stateDirectory` given on a command
    /// line win over the location's own.
    public func repositoryLocation(endpoint: String? = nil, region: String? = nil, stateDirectory: String? = nil)
        throws -> RepositoryLocation
    {
        try RepositoryLocation.parse(
            repository, endpoint: endpoint ?? self.endpoint, region: region ?? self.region,
            stateDirectory: stateDirectory ?? stateDir)
    }

    /// How to unlock it: the location's key file or passphrase file, else `fallback`.
    public func unlock(else fallback: Unlock) -> Unlock {
        if let keyFile { return .keyFile(keyFile) }
        if let passphraseFile { return .passphrase { try Passphrase.fromFile(passphraseFile) } }
        return fallback
    }

    /// The catalog of its repository, opened only for reading: the local one when there is
    /// one (no key and no store is needed), else the repository opened with `unlock`, which
    /// builds it from the bucket.
    func catalog(unlock: Unlock) throws -> Catalog {
        let location = try repositoryLocation()
        if case .directory(let root) = location { _ = try RepositoryConfig.load(from: root) }
        let path = "\(location.root)/catalog.sqlite"
        if Posix.exists(path) {
            do {
                return try Catalog(path: path, readOnlyReason: "it was opened only to look in")
            } catch let error as VaultError where error.code == .unsupportedFormat {
                // A catalog of an older vaultfs: opening the repository upgrades it.
            }
        }
        return try Repository(location: location, unlock: self.unlock(else: unlock)).catalog
    }

    /// The names of the vaults it holds.
    public func vaultNames(unlock: Unlock = .none) throws -> [String] {
        try catalog(unlock: unlock).vaults().map(\.name)
    }

    /// The id of its repository.
    func repositoryId() throws -> String { try config().id }

    /// Its repository's description.
    func config() throws -> RepositoryConfig {
        switch try repositoryLocation() {
        case .directory(let root): return try RepositoryConfig.load(from: root)
        case .s3(let s3, _): return try RepositoryConfig.load(from: try S3Store(s3))
        }
    }

    /// Its repository's description, or nil when nothing is there yet.
    func configIfAny() throws -> RepositoryConfig? {
        do {
            return try config()
        } catch let error as VaultError where error.code == .notARepository || error.code == .notFound {
            return nil
        }
    }

    /// Checks that its repository is one this vaultfs reads: `repository.json` is there and
    /// valid. The key is not asked for.
    func checkRepository() throws { _ = try config() }
}

/// The named locations of this host, kept in `locations.toml`: each a repository (a folder or
/// `s3://`), one of them the default. Without the file, `-R`/`VAULT_REPO` names the one
/// unnamed location, as before locations existed.
public struct Locations: Sendable {
    /// The file: `$VAULT_CONFIG`, else `locations.toml` in `$VAULT_CONFIG_DIR`, else in
    /// `/etc/vaultfs`.
    public let path: String
    public internal(set) var entries: [Location]
    public internal(set) var defaultName: String?
    /// The vaults copied to another location, one policy per vault.
    public internal(set) var copies: [CopyPolicy] = []

    /// What a command names, by which it finds the location that holds it.
    public enum Subject: Sendable {
        case vault(String)
        case server(String)
        case point(String)

        var text: String {
            switch self {
            case .vault(let name): return "vault '\(name)'"
            case .server(let name): return "server '\(name)'"
            case .point(let reference): return "point '\(reference)'"
            }
        }
    }

    public static func path(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let file = environment["VAULT_CONFIG"], !file.isEmpty { return Posix.absolutePath(file) }
        let base = environment["VAULT_CONFIG_DIR"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/etc/vaultfs"
        return "\(base)/locations.toml"
    }

    /// The file at `path` (by default `path()`), or nil when there is none. A file that cannot
    /// be read or parsed is refused with its line.
    public static func load(path: String = Locations.path()) throws -> Locations? {
        guard Posix.exists(path) else { return nil }
        let bytes = try Posix.readFile(path, limit: 1 << 20)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw VaultError.invalid("\(path) is not UTF-8 text")
        }
        var locations = Locations(path: path, entries: [], defaultName: nil)
        try locations.parse(text)
        for location in locations.entries {
            if let source = location.mirrorOf,
                source == location.name || !locations.entries.contains(where: { $0.name == source })
            {
                throw VaultError.invalid(
                    "\(path): location '\(location.name)' is the mirror of '\(source)', which is no other location here"
                )
            }
        }
        try locations.parseCopies(text)
        return locations
    }

    /// No locations yet, to be saved at `path`.
    public static func empty(path: String = Locations.path()) -> Locations {
        Locations(path: path, entries: [], defaultName: nil)
    }

    /// The default location: the one marked so, else the first.
    public var defaultLocation: Location? {
        entries.first { $0.name == defaultName } ?? entries.first
    }

    public func named(_ name: String) throws -> Location {
        guard let location = entries.first(where: { $0.name == name }) else {
            let known = entries.isEmpty ? "none" : entries.map(\.name).joined(separator: ", ")
            throw VaultError.notFound("no location named '\(name)' in \(path) (there: \(known))")
        }
        return location
    }

    /// Adds `location`, after checking its name, that neither its name nor its repository is
    /// here already, and that its repository is one. The first location is the default, and
    /// so is one added with `makeDefault`. With `mirrorOf`, the location is to take copies
    /// of that location's vaults: its repository is made there as that one's mirror (the
    /// same id and key) when nothing is there yet, and must be that mirror otherwise.
    public mutating func add(_ location: Location, makeDefault: Bool = false, mirrorOf: String? = nil) throws {
        try location.validate()
        if entries.contains(where: { $0.name == location.name }) {
            throw VaultError(.alreadyExists, "a location named '\(location.name)' is in \(path) already")
        }
        let place = try location.repositoryLocation()
        if let other = try entries.first(where: { try $0.repositoryLocation().hostName == place.hostName }) {
            throw VaultError(
                .alreadyExists, "location '\(other.name)' is that repository already (\(other.repository))")
        }
        var stored = location
        if let mirrorOf {
            let source = try named(mirrorOf)
            if let further = source.mirrorOf {
                throw VaultError.invalid(
                    "location \(source.name) is the mirror of \(further) itself; make the mirror of \(further)")
            }
            let config = try source.config()
            if let existing = try location.configIfAny() {
                guard existing.id == config.id else {
                    throw VaultError.invalid(
                        "\(location.repository) is another repository (id \(existing.id)), not a mirror of \(source.name); give a new folder or s3:// prefix"
                    )
                }
                guard existing.storeId == nil || existing.storeId != config.storeId else {
                    throw VaultError.invalid(
                        "\(location.repository) is the repository of location \(source.name) itself, under another name"
                    )
                }
            } else {
                try Repository.createMirror(of: config, at: place)
            }
            stored.mirrorOf = source.name
        }
        try location.checkRepository()
        if case .directory(let root) = place { stored.repository = root }
        entries.append(stored)
        if makeDefault || entries.count == 1 { defaultName = location.name }
    }

    /// Makes `name` the default location.
    public mutating func setDefault(_ name: String) throws {
        defaultName = try named(name).name
    }

    /// Removes the location `name`, which must hold no vault (its repository stays as it is).
    /// The default passes to the first of the others.
    public mutating func remove(named name: String, unlock: Unlock = .none) throws {
        let location = try named(name)
        let vaults: [Vault]
        do {
            vaults = try location.catalog(unlock: unlock).vaults()
        } catch let error as VaultError where error.code == .notARepository {
            vaults = []
        } catch let error as VaultError {
            throw VaultError(
                error.code,
                "cannot tell whether location '\(name)' holds vaults (\(error.message)); it was not removed")
        }
        guard vaults.isEmpty else {
            throw VaultError(
                .hasDependants,
                "location '\(name)' holds vault(s) \(vaults.map(\.name).joined(separator: ", ")); remove them first, or keep the location"
            )
        }
        if let copy = copies.first(where: { $0.to == name }) {
            throw VaultError(
                .hasDependants,
                "location '\(name)' takes the copies of vault \(copy.vault); remove that copy policy first ('vaultctl vault set \(copy.vault) --no-copy')"
            )
        }
        if let mirror = entries.first(where: { $0.mirrorOf == name }) {
            throw VaultError(
                .hasDependants, "location '\(mirror.name)' is the mirror of '\(name)'; remove '\(mirror.name)' first")
        }
        entries.removeAll { $0.name == name }
        if defaultName == name { defaultName = entries.first?.name }
    }

    /// The location holding `subject`, or nil when none does. A location that cannot be
    /// read is passed over, and named in the error when no other one holds it.
    public func holding(_ subject: Subject, unlock: Unlock = .none) throws -> Location? {
        let (found, copiesFound, unreadable) = search(subject, unlock: unlock)
        guard found.count <= 1 else {
            throw VaultError.invalid(
                "\(subject.text) is in locations \(found.map(\.name).joined(separator: " and ")); pick one with --location NAME"
            )
        }
        // A copy is not used in the source's place unasked: a backup or a deletion there would
        // part the mirror from its source. The line says how to read it.
        let hint = copiesFound.first.map { "; a copy is in location \($0.name): add --location \($0.name)" } ?? ""
        if found.isEmpty && !unreadable.isEmpty {
            throw VaultError(
                .unreachable,
                "\(subject.text) is in no location that could be read; \(unreadable.joined(separator: "; "))\(hint)")
        }
        if found.isEmpty, let copy = copiesFound.first {
            throw VaultError.notFound(
                "\(subject.text) is only in location \(copy.name), a mirror that takes copies: add --location \(copy.name) to read it there"
            )
        }
        return found.first
    }

    /// The locations holding `subject`: mirrors apart (their copies are found where they
    /// were made, and read in a mirror only when a command names it, never backed up into or
    /// deleted from unasked), and those that could not be read, with why.
    private func search(_ subject: Subject, unlock: Unlock) -> (
        found: [Location], copies: [Location], unreadable: [String]
    ) {
        var found: [Location] = []
        var copiesFound: [Location] = []
        var unreadable: [String] = []
        for location in entries {
            do {
                let catalog = try location.catalog(unlock: unlock)
                switch subject {
                case .vault(let name): _ = try catalog.vault(named: name)
                case .server(let name): _ = try catalog.server(named: name)
                case .point(let reference): _ = try catalog.point(matching: reference)
                }
                if isMirror(location.name) {
                    copiesFound.append(location)
                } else {
                    found.append(location)
                }
            } catch let error as VaultError where error.code == .notFound {
                continue
            } catch {
                unreadable.append("\(location.name): \((error as? VaultError)?.message ?? "\(error)")")
            }
        }
        return (found, copiesFound, unreadable)
    }

    /// Whether `location` is a mirror: every vault there is a copy of its source's.
    public func isMirror(_ location: String) -> Bool {
        entries.first { $0.name == location }?.mirrorOf != nil
    }

    /// Refuses to make or back up anything in `location` when it is a mirror: it holds
    /// copies, and only a copy writes there.
    public func checkTakesBackups(_ location: String) throws {
        if let source = entries.first(where: { $0.name == location })?.mirrorOf {
            throw VaultError.invalid(
                "location \(location) is the mirror of \(source): it takes copies only (back up in \(source))")
        }
    }

    /// The copy policy of `vault`, if it has one.
    public func copyPolicy(of vault: String) -> CopyPolicy? {
        copies.first { $0.vault == vault }
    }

    /// The location whose repository is at `place`, if one is.
    public func named(at place: RepositoryLocation) -> Location? {
        entries.first { (try? $0.repositoryLocation().hostName) == place.hostName }
    }

    /// Sets `policy` as its vault's copy policy (replacing one it had), after checking that
    /// the vault is in a location of this file, that the target is another of them, and that
    /// the target holds no repository yet or this one's mirror: a copy is kept as stored, so
    /// only a repository with the same id and key can take it. `sourceId` is the id of the
    /// vault's repository.
    public mutating func setCopy(_ policy: CopyPolicy, unlock: Unlock = .none) throws {
        try policy.validate()
        let target = try named(policy.to)
        guard let source = try holding(.vault(policy.vault), unlock: unlock) else {
            throw VaultError.notFound("no vault named '\(policy.vault)' in any location of \(path)")
        }
        guard source.name != target.name else {
            throw VaultError.invalid("vault \(policy.vault) is in location \(target.name): copy it to another one")
        }
        guard target.mirrorOf == source.name else {
            throw VaultError.invalid(
                "location \(target.name) is not the mirror of \(source.name): copies go into a location made with 'vaultctl location add NAME PLACE --mirror-of \(source.name)'"
            )
        }
        copies.removeAll { $0.vault == policy.vault }
        copies.append(policy)
    }

    /// Removes the copy policy of `vault` (what was copied stays where it is).
    public mutating func clearCopy(vault: String) throws {
        guard copies.contains(where: { $0.vault == vault }) else {
            throw VaultError.notFound("vault \(vault) has no copy policy in \(path)")
        }
        copies.removeAll { $0.vault == vault }
    }

    /// Refuses `subject` as a new name when a location holds it already: names are unique
    /// across locations, so a command finds what it names in one place.
    public func checkNew(_ subject: Subject, unlock: Unlock = .none) throws {
        // A location away cannot be asked; a clash there shows when it is back.
        let (found, copies, _) = search(subject, unlock: unlock)
        if let holder = found.first ?? copies.first {
            throw VaultError(.alreadyExists, "\(subject.text) exists in location \(holder.name) already")
        }
    }

    /// Writes the file (through a temporary name, so a reader sees the old file or the new).
    public func save() throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !Posix.isDirectory(folder) {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        try Posix.writeFileAtomically(path, Array(text.utf8), mode: 0o644)
    }
}
