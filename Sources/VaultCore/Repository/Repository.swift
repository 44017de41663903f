import Foundation
internal import CSupport
import Glibc

/// One backup location on disk: configuration, catalog, chunk store, chunk maps and
/// manifests.
public final class Repository: Sendable {
    public let root: String
    public let config: RepositoryConfig
    public let catalog: Catalog
    public let chunks: ChunkStore
    public let maps: MapStore
    let manifests: ManifestStore
    let modes: FileModes

    /// Why nothing can be written here, or nil when the repository is writable.
    public var readOnlyReason: String? { catalog.readOnlyReason }

    /// Opens an existing repository and settles backups whose process died. A repository
    /// that cannot be written is opened read-only: every reading command still works.
    /// `unlock` gives the key of an encrypted repository; a wrong one is refused before
    /// anything is read or written.
    public init(path: String, unlock: Unlock = .none) throws {
        root = Posix.absolutePath(path)
        var config = try RepositoryConfig.load(from: root)
        for folder in ["chunks", "maps", "locks"] where !Posix.isDirectory("\(root)/\(folder)") {
            throw VaultError(.corrupt, "\(root) is damaged: its \(folder)/ folder is missing")
        }
        let sealer = try unlock.keys(for: config, at: root).map(Sealer.init)
        modes = FileModes.of(config)
        catalog = try Catalog(path: "\(root)/catalog.sqlite", readOnlyReason: Self.writeProblem(root))
        chunks = ChunkStore(root: "\(root)/chunks", modes: modes, sealer: sealer)
        maps = MapStore(root: "\(root)/maps", modes: modes, sealer: sealer)
        manifests = ManifestStore(root: "\(root)/manifests", modes: modes, sealer: sealer)
        if catalog.readOnlyReason == nil && config.format < RepositoryConfig.currentFormat {
            try Self.upgrade(root: root, config: &config, catalog: catalog, manifests: manifests, modes: modes)
        }
        if config.format >= 2 && !Posix.isDirectory(manifests.root) {
            throw VaultError(.corrupt, "\(root) is damaged: its manifests/ folder is missing")
        }
        self.config = config
        recoverInterrupted()
    }

    /// Creates a new, empty repository at `path` (an empty or missing directory). Everything
    /// in it is owner-only, or readable by `group` when one is given.
    /// `encryption` makes it encrypted, its key wrapped by a passphrase or written to a key
    /// file outside the repository.
    @discardableResult
    public static func create(at path: String, chunkSize: Int, compressionLevel: Int, group: String? = nil,
                              encryption: Encryption = .none) throws -> Repository {
        let root = Posix.absolutePath(path)
        var config = try RepositoryConfig(chunkSize: chunkSize, compressionLevel: compressionLevel, group: group)
        let gid = try group.map(FileModes.groupId)
        if Posix.exists("\(root)/\(RepositoryConfig.fileName)") {
            throw VaultError(.alreadyExists, "\(root) is already a vaultfs repository")
        }
        if Posix.isDirectory(root), !Posix.listDirectory(root).isEmpty {
            throw VaultError(.notEmpty, "\(root) is not empty; give an empty or new directory")
        }
        let keys = encryption == .none ? nil : RepositoryKeys.random()
        var unlock = Unlock.none
        if let keys {
            config.encryption = RepositoryConfig.cipher
            config.keyCheck = keys.check(repository: config.id)
            switch encryption {
            case .passphrase(let passphrase):
                guard !passphrase.isEmpty else { throw VaultError.invalid("an empty passphrase protects nothing; give one") }
                config.key = try WrappedKey.wrap(keys, passphrase: passphrase, repository: config.id)
                unlock = .passphrase { passphrase }
            case .keyFile(let file):
                if Posix.exists(file) { throw VaultError(.alreadyExists, "\(file) already exists; give a new file for the key") }
                unlock = .keyFile(file)
            case .none:
                break
            }
        }
        let modes = FileModes.of(config)
        try Posix.makeDirectory(root, mode: modes.directory)
        if let gid {
            // Folders carry the setgid bit, so everything made below inherits the group.
            guard chown(root, uid_t.max, gid) == 0, chmod(root, modes.directory) == 0 else {
                throw Posix.error("cannot give the group '\(group!)'", root)
            }
        } else if chmod(root, modes.directory) != 0 {
            throw Posix.error("cannot set the mode of", root)
        }
        try ChunkStore.create(at: "\(root)/chunks", modes: modes)
        try Posix.makeDirectory("\(root)/maps", mode: modes.directory)
        try Posix.makeDirectory("\(root)/locks", mode: modes.directory)
        try ManifestStore.create(at: "\(root)/manifests", modes: modes)
        _ = try Catalog.create(at: "\(root)/catalog.sqlite", mode: modes.file)
        if let keys, case .keyFile(let file) = encryption { try KeyFile.write(keys, repository: config.id, to: file) }
        try config.save(to: root, mode: modes.file)
        return try Repository(path: root, unlock: unlock)
    }

    /// How `create` protects a new repository.
    public enum Encryption: Equatable, Sendable {
        case none
        /// AES-256-GCM, the key wrapped by this passphrase in `repository.json`.
        case passphrase(String)
        /// AES-256-GCM, the key written to this new file and kept nowhere else.
        case keyFile(String)
    }

    /// Why the repository at `root` cannot be written, or nil when it can.
    static func writeProblem(_ root: String) -> String? {
        var sv = statvfs()
        if statvfs(root, &sv) == 0 && sv.f_flag & UInt(ST_RDONLY) != 0 { return "it is on read-only media" }
        if access(root, W_OK) != 0 { return "you may not write to it (\(Posix.message(errno)))" }
        return nil
    }

    /// Throws, saying why, when the repository cannot be written; `what` names the command.
    public func requireWritable(_ what: String) throws {
        if let readOnlyReason {
            throw VaultError(.readOnly, "cannot \(what): the repository \(root) cannot be written: \(readOnlyReason)")
        }
    }

    /// Brings an older repository to the current format: for format 1, manifests for
    /// everything the catalog knows and owner-only folders. Stored chunks are not rewritten.
    private static func upgrade(root: String, config: inout RepositoryConfig, catalog: Catalog,
                                manifests: ManifestStore, modes: FileModes) throws {
        let lock = try FileLock.lock("\(root)/locks/upgrade.lock", shared: false, mode: modes.file)
        defer { _ = lock }
        if let current = try? RepositoryConfig.load(from: root), current.format >= RepositoryConfig.currentFormat {
            config = current
            return
        }
        if config.format < 2 {
            try ManifestStore.create(at: manifests.root, modes: modes)
            for manifest in try catalog.allPointManifests() { try manifests.write(manifest) }
            for vault in try catalog.vaultManifests() { try manifests.write(vault) }
            for server in try catalog.serverManifests() { try manifests.write(server) }
            if chmod(root, modes.directory) != 0 { throw Posix.error("cannot set the mode of", root) }
        }
        config.format = RepositoryConfig.currentFormat
        try config.save(to: root, mode: modes.file)
    }

    /// Locks one server for a backup; nil when another backup of it is running.
    func lockServer(_ id: Int64) throws -> FileLock? {
        try FileLock.tryLock("\(root)/locks/server-\(id).lock", mode: modes.file)
    }

    /// Held (shared) by every backup; garbage collection takes it exclusively, so it never
    /// removes chunks a running backup has written but not yet recorded in a map. With
    /// `wait` false, nil when a collection is running.
    func lockForBackup(wait: Bool = true) throws -> FileLock? {
        wait ? try FileLock.lock("\(root)/locks/gc.lock", shared: true, mode: modes.file)
            : try FileLock.tryLock("\(root)/locks/gc.lock", shared: true, mode: modes.file)
    }
    func tryLockForCollection() throws -> FileLock? { try FileLock.tryLock("\(root)/locks/gc.lock", mode: modes.file) }

    /// Settles `creating` points whose server lock is free (their process died): one whose
    /// manifest already says active had finished writing and is committed; any other fails.
    public func recoverInterrupted() {
        guard readOnlyReason == nil,
              let creating = try? catalog.read({ try Point.filter(sql: "status = 'creating'").fetchAll($0) }) else { return }
        for point in creating {
            guard let serverId = point.serverId, let lock = try? lockServer(serverId) else { continue }
            defer { _ = lock }
            if let manifest = try? manifests.point(point.id), manifest.isLive, mapsAreWhole(manifest) {
                if (try? catalog.rollForward(manifest)) == true { continue }
            }
            failPoint(point.id, error: "interrupted: the process making this backup ended before it finished", at: Date(), retrySlot: true)
        }
    }

    /// Whether every map a manifest names is there and decodes.
    private func mapsAreWhole(_ manifest: PointManifest) -> Bool {
        manifest.disks.allSatisfy { (try? maps.read(point: manifest.point.id, disk: $0.disk)) != nil }
    }

    /// Marks a `creating` point failed, manifest first; false when it was not creating.
    @discardableResult
    func failPoint(_ id: String, error: String, at time: Date, retrySlot: Bool = false) -> Bool {
        if var manifest = try? catalog.manifest(ofPoint: id), manifest.point.status == .creating {
            manifest.point.status = .failed
            manifest.point.error = error
            manifest.point.finishedAt = time
            try? manifests.write(manifest)
        }
        let failed = catalog.failPoint(id, error: error, at: time, retrySlot: retrySlot)
        if !failed { try? syncManifest(of: id) }
        return failed
    }

    /// Rewrites a point's manifest from the catalog, after a change the catalog refused.
    func syncManifest(of id: String) throws {
        if let manifest = try catalog.manifest(ofPoint: id) { try manifests.write(manifest) }
    }

    /// Flushes written chunks, maps and manifests to stable storage before the catalog says
    /// they exist.
    func syncData() throws {
        let fd = try Posix.open(root, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        if vfs_syncfs(fd) != 0 { throw Posix.error("cannot sync", root) }
    }
}
