import Foundation

/// The key of an encrypted repository: rewrapping and paper backups.
extension Repository {
    /// Wraps the key under a new passphrase; no data is touched. The old passphrase stops
    /// working at once.
    public func changePassphrase(to passphrase: String) throws {
        try requireWritable("change the passphrase")
        guard let keys = chunks.sealer?.keys else { throw VaultError.invalid("\(root) is not encrypted") }
        guard !passphrase.isEmpty else { throw VaultError.invalid("an empty passphrase protects nothing; give one") }
        var current = try RepositoryConfig.load(from: objects)
        guard current.key != nil else {
            throw VaultError.invalid(
                "\(root) keeps its key in a key file, not under a passphrase; keep that file safe instead")
        }
        current.key = try WrappedKey.wrap(keys, passphrase: passphrase, repository: current.id)
        try current.save(to: objects)
    }

    /// Writes the key to a new file (mode 0600): usable with `--key-file` and `-o key_file=`,
    /// and printable for a paper backup. Whoever has it can read every backup.
    public func exportKey(to path: String) throws {
        guard let keys = chunks.sealer?.keys else {
            throw VaultError.invalid("\(root) is not encrypted: there is no key to export")
        }
        if Posix.exists(path) { throw VaultError(.alreadyExists, "\(path) already exists; give a new file") }
        try KeyFile.write(keys, repository: config.id, to: path)
    }
}

/// What `vaultctl info` shows.
public struct RepositoryInfo: Codable, Sendable {
    public var path: String
    public var id: String
    public var format: Int
    public var chunkSize: Int
    public var compressionLevel: Int
    /// `aes-256-gcm` or `none`.
    public var encryption: String
    /// Where the key is: "wrapped by a passphrase in repository.json" or "in a key file".
    public var keyLocation: String?
    public var group: String?
    public var vaults: Int
    public var servers: Int
    public var points: Int
    public var chunks: Int
    public var storedBytes: Int64
    public var readOnly: String?
    /// The local state folder of a repository in S3; nil for one in a folder.
    public var stateDirectory: String?
    /// How long an unused chunk stays marked before a collection removes it.
    public var gcGraceSeconds: Double
}

extension Repository {
    public func info() throws -> RepositoryInfo {
        let stored = try chunks.allChunks()
        return RepositoryInfo(
            path: location.name, id: config.id, format: config.format, chunkSize: config.chunkSize,
            compressionLevel: config.compressionLevel, encryption: config.encryption ?? "none",
            keyLocation: config.isEncrypted
                ? (config.key != nil ? "wrapped by a passphrase in repository.json" : "in a key file") : nil,
            group: config.group, vaults: try catalog.vaults().count, servers: try catalog.servers().count,
            points: try catalog.points(includeSoftDeleted: true).filter { $0.status == .active }.count,
            chunks: stored.count, storedBytes: stored.reduce(0) { $0 + $1.size },
            readOnly: readOnlyReason,
            stateDirectory: {
                if case .s3(_, let state) = location { return state }
                return nil
            }(),
            gcGraceSeconds: gcGrace)
    }
}
