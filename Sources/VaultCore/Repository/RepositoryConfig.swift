import Foundation

/// `repository.json`: what kind of repository this is and how it stores chunks.
public struct RepositoryConfig: Codable, Equatable, Sendable {
    /// Format 2 added manifests and owner-only files; format 3 writes chunks as independent
    /// checksummed 64 KiB frames. Older repositories are upgraded in place the first time they
    /// are opened for writing; chunks already stored stay as they are and stay readable.
    public static let currentFormat = 3
    public static let fileName = "repository.json"

    public var format: Int
    public var id: String
    public var chunkSize: Int
    public var compressionLevel: Int
    public var createdAt: String
    /// The group that may read the repository (`init --group`); nil for owner-only.
    public var group: String?
    /// `aes-256-gcm`, or nil when the repository is not encrypted. Chosen at `init`.
    public var encryption: String?
    /// The master key wrapped by the passphrase; nil when it is kept in a key file.
    public var key: WrappedKey?
    /// Tells the right key from a wrong one (see `RepositoryKeys.check`).
    public var keyCheck: String?

    /// Seconds an unused chunk waits, marked, before a collection removes it; nil for the
    /// default (none in a folder, a day in a bucket). See `GarbageCollector`.
    public var gcGraceSeconds: Double?
    /// Made anew each time a repository or mirror is laid out, so a store made again under
    /// a name another held (say, a bucket restored by `sync`) is told from the one before.
    public var storeId: String?
    public static let cipher = "aes-256-gcm"
    public var isEncrypted: Bool { encryption != nil }

    public init(chunkSize: Int, compressionLevel: Int, group: String? = nil) throws {
        guard chunkSize >= 64 << 10, chunkSize <= 4 << 20, chunkSize & (chunkSize - 1) == 0 else {
            throw VaultError.invalid(
                "chunk size \(Units.formatSize(Int64(chunkSize))) must be a power of two from 64K to 4M")
        }
        guard (1...19).contains(compressionLevel) else {
            throw VaultError.invalid("compression level \(compressionLevel) must be 1-19")
        }
        format = Self.currentFormat
        id = UUID().uuidString.lowercased()
        self.chunkSize = chunkSize
        self.compressionLevel = compressionLevel
        createdAt = Units.formatTime(Date())
        self.group = group
    }

    /// Loads `repository.json` of the repository in the folder `root`.
    static func load(from root: String) throws -> RepositoryConfig {
        guard Posix.isDirectory(root) else {
            throw VaultError(.notARepository, "\(root) is not a vaultfs repository (no such directory)")
        }
        return try load(from: DirectoryStore(root: root, modes: .ownerOnly))
    }

    /// Loads and checks `repository.json` from a repository's object store.
    static func load(from objects: any ObjectStore) throws -> RepositoryConfig {
        let root = objects.location
        let path = "\(objects.location)/\(fileName)"
        guard let bytes = try objects.get(fileName, limit: 64 << 10) else {
            throw VaultError(
                .notARepository, "\(root) is not a vaultfs repository (no \(fileName); create one with 'vaultctl init')"
            )
        }
        let config: RepositoryConfig
        do {
            config = try JSONDecoder().decode(RepositoryConfig.self, from: Data(bytes))
        } catch {
            throw VaultError(.notARepository, "\(path) is not a valid vaultfs repository description", cause: error)
        }
        guard config.format <= currentFormat else {
            throw VaultError(
                .unsupportedFormat,
                "\(root) uses repository format \(config.format); this vaultfs reads up to format \(currentFormat), upgrade vaultfs"
            )
        }
        guard config.encryption == nil || config.encryption == cipher && config.keyCheck != nil else {
            throw VaultError(
                .corrupt, "\(path) is damaged or from a newer vaultfs: unknown encryption '\(config.encryption ?? "")'")
        }
        guard config.chunkSize >= 64 << 10, config.chunkSize <= 4 << 20, config.chunkSize & (config.chunkSize - 1) == 0,
            (1...22).contains(config.compressionLevel)
        else {
            throw VaultError(
                .corrupt,
                "\(path) is damaged: chunk size \(config.chunkSize) or compression level \(config.compressionLevel) is out of range"
            )
        }
        return config
    }

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(self)) + [10]
    }

    /// Replaces `repository.json` (an upgrade, a new passphrase).
    func save(to objects: any ObjectStore) throws {
        try objects.put(Self.fileName, try encoded(), durable: true)
    }
}

extension FileModes {
    /// The modes of the repository `config` describes.
    static func of(_ config: RepositoryConfig) -> FileModes { config.group == nil ? .ownerOnly : .groupReadable }
}
