import Foundation
import Glibc

/// Removes what no point needs any more: chunks, the maps of deleted and failed points, and
/// temporary files writers left behind (mark and sweep).
///
/// The rule: a chunk is kept when a point that the catalog *or* the manifests consider
/// restorable (active or being made, and not deleted for good) refers to it, or when a live
/// reader holds a lease on a point that does. Collection runs only while no backup runs (it
/// takes the backup lock alone), so chunks a running backup has written but not yet mapped
/// are safe. It removes nothing at all when the manifests hold restorable points that the
/// catalog does not know: the catalog is missing, replaced or older than the repository.
public struct GarbageCollector {
    public let repository: Repository

    public init(repository: Repository) { self.repository = repository }

    public struct Result: Sendable, Codable {
        /// False when a backup was running and collection was left for later.
        public var ran = false
        public var dryRun = false
        public var removedChunks = 0
        public var removedChunkBytes: Int64 = 0
        public var keptChunks = 0
        public var removedMaps = 0
        public var removedTemporaries = 0
        public var removedTemporaryBytes: Int64 = 0
        /// Points the catalog no longer holds restorable but whose manifest still does: their
        /// data is kept until `repair --rebuild-catalog` settles them.
        public var disagreements: [String] = []
    }

    /// Collects now, or with `dryRun` only counts what it would remove.
    public func collect(dryRun: Bool = false, progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }) throws -> Result {
        try repository.requireWritable("collect garbage")
        guard let lock = try repository.tryLockForCollection() else { return Result() }
        defer { _ = lock }
        // No backup runs on any host now: what the others committed is in the store.
        try repository.refreshFromStore()
        repository.recoverInterrupted()
        var result = Result(ran: true, dryRun: dryRun)

        // Decide what is in use while no reader can take a new lease.
        let gate = try FileLock.lock("\(repository.root)/locks/leases.lock", shared: false, mode: repository.modes.file)
        let keep = try pointsInUse(&result, dryRun: dryRun)
        var referenced = Set<ChunkHash>()
        for id in keep {
            for disk in try repository.maps.disks(of: id) {
                let map = try repository.maps.read(point: id, disk: disk)
                for case .data(let hash) in map.entries.map(\.ref) { referenced.insert(hash) }
            }
        }
        for point in try repository.maps.points() where !keep.contains(point) {
            result.removedMaps += 1
            if !dryRun {
                try requireLease(lock)
                try repository.maps.remove(point: point)
            }
        }
        _ = gate

        let stored = try repository.chunks.allChunks()
        let meter = ProgressMeter(label: dryRun ? "chunks looked at" : "chunks swept", unit: .chunks, report: progress)
        meter.addTotal(Int64(stored.count))
        defer { meter.finish() }
        for (hash, size) in stored {
            meter.advance(1)
            if referenced.contains(hash) { result.keptChunks += 1; continue }
            result.removedChunks += 1
            result.removedChunkBytes += size
            if !dryRun {
                try requireLease(lock)
                try repository.chunks.remove(hash)
                FaultInjection.reached("gc-chunk-removed")
            }
        }
        // No backup runs now, so every temporary chunk or map is a dead writer's; other
        // temporaries are left an hour in case a command is writing one right now.
        let now = Date().timeIntervalSince1970
        var temporaries: [String] = []
        if let directory = repository.objects as? DirectoryStore {
            temporaries += directory.staleTemporaries(prefix: ChunkStore.prefix, olderThan: 0, now: now)
            temporaries += directory.staleTemporaries(prefix: MapStore.prefix, olderThan: 0, now: now)
            temporaries += directory.staleTemporaries(prefix: ManifestStore.prefix, olderThan: 3600, now: now)
        }
        temporaries += Posix.staleTemporaries(in: repository.root, olderThan: 3600, now: now)
        for path in temporaries {
            result.removedTemporaries += 1
            result.removedTemporaryBytes += Posix.fileSize(path)
            if !dryRun { unlink(path) }
        }
        return result
    }

    /// Stops a collection whose lease in a shared object store was lost (it could not be
    /// renewed in time): a backup on another host may have started since.
    private func requireLease(_ lock: StoreLock) throws {
        if lock.isLost {
            throw VaultError(.busy, "garbage collection stopped: its lease in \(repository.location.name) lapsed while the store could not be reached, so a backup may have started; run it again")
        }
    }

    /// The points whose maps and chunks must stay: restorable in the catalog or in the
    /// manifests, their chains, and points readers hold. Settles manifests that lag behind
    /// the catalog where that keeps more, never less.
    private func pointsInUse(_ result: inout Result, dryRun: Bool) throws -> Set<String> {
        let catalogPoints = try repository.catalog.allPointManifests()
        let manifestPoints = Dictionary(try repository.manifests.allPoints().map { ($0.point.id, $0) }, uniquingKeysWith: { a, _ in a })
        let known = Set(catalogPoints.map(\.point.id))
        let unknown = manifestPoints.values.filter { $0.isLive && !known.contains($0.point.id) }
        if let first = unknown.first {
            throw VaultError(.needsRepair, "the catalog does not know \(unknown.count) restorable point(s) that the repository's manifests hold (\(first.point.serverName)/\(first.point.name) among them): it is missing, replaced or older than the repository. Nothing was removed; rebuild it with 'vaultctl repair --rebuild-catalog'")
        }
        var keep = Set<String>()
        var parents: [String: String] = [:]
        for entry in catalogPoints {
            let id = entry.point.id
            let inCatalog = entry.point.status != .failed && entry.point.deletion != .deleted
            let manifest = manifestPoints[id]
            if inCatalog { keep.insert(id) }
            if manifest?.isLive == true { keep.insert(id) }
            if manifest?.isLive == true && !inCatalog {
                result.disagreements.append("\(entry.point.serverName)/\(entry.point.name) (\(id))")
            } else if manifest != entry && !dryRun {
                try repository.manifests.write(entry)
            }
            if let parent = entry.point.parentId { parents[id] = parent }
        }
        keep.formUnion(ReaderLease.heldPoints(repository, removeDead: !dryRun))
        for id in Array(keep) {
            var next = parents[id]
            while let parent = next, keep.insert(parent).inserted { next = parents[parent] }
        }
        return keep
    }
}
