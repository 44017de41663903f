import Foundation
internal import CSupport
import Glibc

/// One backup location on disk: configuration, catalog, chunk store and chunk maps.
public final class Repository: Sendable {
    public let root: String
    public let config: RepositoryConfig
    public let catalog: Catalog
    public let chunks: ChunkStore
    public let maps: MapStore

    /// Opens an existing repository and settles backups whose process died.
    public init(path: String) throws {
        root = Posix.absolutePath(path)
        config = try RepositoryConfig.load(from: root)
        for folder in ["chunks", "maps", "locks"] where !Posix.isDirectory("\(root)/\(folder)") {
            throw VaultError(.corrupt, "\(root) is damaged: its \(folder)/ folder is missing")
        }
        catalog = try Catalog(path: "\(root)/catalog.sqlite")
        chunks = ChunkStore(root: "\(root)/chunks")
        maps = MapStore(root: "\(root)/maps")
        recoverInterrupted()
    }

    /// Creates a new, empty repository at `path` (an empty or missing directory).
    @discardableResult
    public static func create(at path: String, chunkSize: Int, compressionLevel: Int) throws -> Repository {
        let root = Posix.absolutePath(path)
        let config = try RepositoryConfig(chunkSize: chunkSize, compressionLevel: compressionLevel)
        if Posix.exists("\(root)/\(RepositoryConfig.fileName)") {
            throw VaultError(.alreadyExists, "\(root) is already a vaultfs repository")
        }
        if Posix.isDirectory(root), !Posix.listDirectory(root).isEmpty {
            throw VaultError(.notEmpty, "\(root) is not empty; give an empty or new directory")
        }
        try Posix.makeDirectory(root)
        try ChunkStore.create(at: "\(root)/chunks")
        try Posix.makeDirectory("\(root)/maps")
        try Posix.makeDirectory("\(root)/locks")
        _ = try Catalog(path: "\(root)/catalog.sqlite")
        try config.save(to: root)
        return try Repository(path: root)
    }

    /// Locks one server for a backup; nil when another backup of it is running.
    func lockServer(_ id: Int64) throws -> FileLock? {
        try FileLock.tryLock("\(root)/locks/server-\(id).lock")
    }

    /// Held (shared) by every backup; garbage collection takes it exclusively, so it never
    /// removes chunks a running backup has written but not yet recorded in a map.
    func lockForBackup() throws -> FileLock { try FileLock.lock("\(root)/locks/gc.lock", shared: true) }
    func tryLockForCollection() throws -> FileLock? { try FileLock.tryLock("\(root)/locks/gc.lock") }

    /// Turns `creating` points whose server lock is free (their process died) into `failed`.
    public func recoverInterrupted() {
        guard let creating = try? catalog.read({ try Point.filter(sql: "status = 'creating'").fetchAll($0) }) else { return }
        for point in creating {
            guard let serverId = point.serverId, let lock = try? lockServer(serverId) else { continue }
            let failed = catalog.failPoint(point.id, error: "interrupted: the process making this backup ended before it finished",
                                           at: Date(), retrySlot: true)
            if failed { maps.remove(point: point.id) }
            _ = lock
        }
    }

    /// Flushes written chunks and maps to stable storage before the catalog says they exist.
    func syncData() throws {
        let fd = try Posix.open(root, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        if vfs_syncfs(fd) != 0 { throw Posix.error("cannot sync", root) }
    }
}
