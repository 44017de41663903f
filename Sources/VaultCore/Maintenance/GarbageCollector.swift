import Foundation
import GRDB

/// Removes chunks no remaining point refers to (mark and sweep). It runs only while no
/// backup is running, so chunks written by a backup that has not yet committed are safe.
public struct GarbageCollector {
    public let repository: Repository

    public init(repository: Repository) { self.repository = repository }

    public struct Result: Sendable {
        public var removed: Int
        public var kept: Int
        /// False when a backup was running and collection was left for later.
        public var ran: Bool
    }

    public func collect() throws -> Result {
        guard let lock = try repository.tryLockForCollection() else { return Result(removed: 0, kept: 0, ran: false) }
        defer { _ = lock }
        let live = try repository.catalog.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM point WHERE deletion != 'deleted' AND status != 'failed'")
        }
        var referenced = Set<ChunkHash>()
        for id in live {
            for disk in try repository.catalog.pointDisks(id) {
                for entry in try repository.maps.read(point: id, disk: disk.disk).entries {
                    if case .data(let hash) = entry.ref { referenced.insert(hash) }
                }
            }
        }
        var removed = 0
        for hash in repository.chunks.allHashes() where !referenced.contains(hash) {
            repository.chunks.remove(hash)
            removed += 1
        }
        repository.chunks.removeStaleTemporaries(now: Date().timeIntervalSince1970)
        for folder in repository.maps.pointDirectories() where !live.contains(folder) {
            if let point = try repository.catalog.point(id: folder), point.status == .creating { continue }
            repository.maps.remove(point: folder)
        }
        return Result(removed: removed, kept: referenced.count, ran: true)
    }
}
