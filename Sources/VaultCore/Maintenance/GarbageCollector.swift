import Foundation
import Glibc
import Logging

/// Removes what no point needs any more: chunks, the maps of deleted and failed points, and
/// temporary files writers left behind (mark and sweep, in two phases).
///
/// The rule: a chunk is kept when a point that the catalog *or* the manifests consider
/// restorable (active or being made, and not deleted for good) refers to it, or when a live
/// reader holds a lease on a point that does. Collection runs only while no backup runs on
/// any host (it takes the backup lock alone, and in a shared store the lease `gc` while no
/// server's lease is live), so chunks a running backup has written but not yet mapped are
/// safe. It removes nothing at all when the manifests hold restorable points that the
/// catalog does not know: the catalog is missing, replaced or older than the repository.
///
/// Two phases: a chunk no point uses is first marked (in the object `gc/marks`), and removed
/// by a later collection only once it has stayed unused for the grace period; one used again
/// meanwhile loses its mark. The grace period (`repository.json`'s `gcGraceSeconds`; by
/// default none in a folder and one day in a bucket) outlasts the longest backup, so a
/// backup on a host whose lease lapsed mid-run still finds what it reused. Unused chunks are
/// found in the maps a collection removes; a listing of every chunk, which also finds those
/// of killed backups, is made on each collection in a folder and weekly in a bucket (or
/// when asked). Each collection that removes chunks first records them in
/// `gc/removed/<generation>`, from which every host's chunk index forgets them.
public struct GarbageCollector {
    public let repository: Repository
    /// Seconds an unused chunk stays marked before it is removed; nil for the repository's.
    public var grace: TimeInterval?
    /// Lists every chunk of the store this run, whenever the last listing was.
    public var listAll = false

    /// How often a collection in a shared store lists every chunk on its own.
    static let listingInterval: TimeInterval = 7 * 86400

    public init(repository: Repository, grace: TimeInterval? = nil, listAll: Bool = false) {
        self.repository = repository
        self.grace = grace
        self.listAll = listAll
    }

    public struct Result: Sendable, Codable {
        /// False when a backup was running and collection was left for later.
        public var ran = false
        public var dryRun = false
        public var removedChunks = 0
        /// Bytes of the removed chunks whose size a listing gave.
        public var removedChunkBytes: Int64 = 0
        /// Removed chunks whose size is not known (marked from a removed map, not listed).
        public var removedChunksUnsized = 0
        /// Unused chunks marked and waiting out the grace period.
        public var markedChunks = 0
        public var graceSeconds: Double = 0
        /// Whether this run listed every chunk of the store.
        public var listed = false
        public var keptChunks = 0
        public var removedMaps = 0
        public var removedTemporaries = 0
        public var removedTemporaryBytes: Int64 = 0
        /// Points the catalog no longer holds restorable but whose manifest still does: their
        /// data is kept until `repair --rebuild-catalog` settles them.
        public var disagreements: [String] = []
        /// Maps of points no longer in use that could not be read, with why. Without a listing
        /// of every chunk their chunks cannot be found, so such a map is kept, not removed, until
        /// a run that lists (`gc --list`, or any gc of a folder) or a repair settles it.
        public var unreadableMaps: [String] = []
        /// The `vaultfs-` snapshots of this host's `rbd:` disks that no point needs, removed
        /// (or, in a dry run, that would be), and why any could not be
        /// (`Repository.tidyDiskSnapshots`, run after a collection).
        public var snapshots = SnapshotTidying()
    }

    /// What tidying the snapshots of this host's snapshot disks did.
    public struct SnapshotTidying: Sendable, Codable, Equatable {
        public var removed: [String] = []
        /// One line for each disk or snapshot that could not be looked at or removed.
        public var problems: [String] = []
        public init() {}
    }

    /// Collects now, or with `dryRun` only counts what it would remove.
    public func collect(dryRun: Bool = false, progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }) throws
        -> Result
    {
        try repository.requireWritable("collect garbage")
        guard let lock = try repository.tryLockForCollection() else { return Result() }
        defer { _ = lock }
        // No backup runs on any host now: what the others committed is in the store.
        try repository.refreshFromStore()
        repository.recoverInterrupted()
        let grace = max(0, self.grace ?? repository.gcGrace)
        var result = Result(ran: true, dryRun: dryRun, graceSeconds: grace)
        let now = Date().timeIntervalSince1970

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
        // The chunks of the maps about to go are the candidates a listing would find.
        let doomed = try repository.maps.points().subtracting(keep)
        var marks = try Marks.load(repository.objects)
        var unreadable = Set<String>()
        for point in doomed {
            do {
                for disk in try repository.maps.disks(of: point) {
                    let map = try repository.maps.read(point: point, disk: disk)
                    for case .data(let hash) in map.entries.map(\.ref)
                    where !referenced.contains(hash) && marks.chunks[hash] == nil {
                        marks.chunks[hash] = Marks.Mark(at: now, size: -1)
                    }
                }
            } catch {
                unreadable.insert(point)
                result.unreadableMaps.append("\(point): \(error)")
            }
        }
        result.listed = listAll || !repository.isShared || now - marks.listedAt >= Self.listingInterval
        // A listing finds every unused chunk: then an unreadable map can go like the others.
        let removable = result.listed ? doomed : doomed.subtracting(unreadable)
        var sizes: [ChunkHash: Int64] = [:]
        if result.listed {
            let stored = try repository.chunks.allChunks()
            sizes = Dictionary(stored.map { ($0.hash, $0.size) }, uniquingKeysWith: { a, _ in a })
            // Marks of chunks that are gone already are dropped; unused ones are marked.
            marks.chunks = marks.chunks.filter { sizes[$0.key] != nil }
            for (hash, size) in stored where !referenced.contains(hash) && marks.chunks[hash] == nil {
                marks.chunks[hash] = Marks.Mark(at: now, size: size)
            }
            marks.listedAt = now
        }
        // A chunk used again loses its mark.
        marks.chunks = marks.chunks.filter { !referenced.contains($0.key) }
        result.keptChunks = result.listed ? sizes.keys.filter { referenced.contains($0) }.count : referenced.count
        let due = marks.chunks.filter { now - $0.value.at >= grace }
        result.markedChunks = marks.chunks.count - due.count
        // Marks outlive this run only where they wait or where a later run will not list.
        // Without a listing now, they are stored before the maps that named the chunks go,
        // so none is forgotten; after one, a later listing finds them again, and they are
        // stored only once the due chunks are gone (a full disk still frees space).
        let keepsMarks = !dryRun && (repository.isShared || grace > 0)
        if keepsMarks && !result.listed {
            try requireLease(lock)
            try marks.save(repository.objects)
        }
        for point in removable {
            result.removedMaps += 1
            if !dryRun {
                try requireLease(lock)
                try repository.maps.remove(point: point)
            }
        }
        _ = gate

        if !due.isEmpty && !dryRun && repository.isShared {
            try requireLease(lock)
            try RemovalRecords.write(due.keys, to: repository.objects)
        }
        let meter = ProgressMeter(
            label: dryRun ? "chunks to remove" : "chunks removed", unit: .chunks, report: progress)
        meter.addTotal(Int64(due.count))
        defer { meter.finish() }
        for (hash, mark) in due {
            meter.advance(1)
            result.removedChunks += 1
            let size = sizes[hash] ?? mark.size
            if size >= 0 { result.removedChunkBytes += size } else { result.removedChunksUnsized += 1 }
            if !dryRun {
                try requireLease(lock)
                try repository.chunks.remove(hash)
                FaultInjection.reached("gc-chunk-removed")
            }
        }
        if keepsMarks && (result.listed || !due.isEmpty) {
            for hash in due.keys { marks.chunks[hash] = nil }
            try marks.save(repository.objects)
        }
        // No backup runs now, so every temporary chunk or map is a dead writer's; other
        // temporaries are left an hour in case a command is writing one right now.
        var temporaries: [String] = []
        let objects = repository.objects
        temporaries += objects.staleTemporaries(prefix: ChunkStore.prefix, olderThan: 0, now: now)
        temporaries += objects.staleTemporaries(prefix: MapStore.prefix, olderThan: 0, now: now)
        temporaries += objects.staleTemporaries(prefix: ManifestStore.prefix, olderThan: 3600, now: now)
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
            throw VaultError(
                .busy,
                "garbage collection stopped: its lease in \(repository.location.name) lapsed while the store could not be reached, so a backup may have started; run it again"
            )
        }
    }

    /// The points whose maps and chunks must stay: restorable in the catalog or in the
    /// manifests, their chains, and points readers hold. Settles manifests that lag behind
    /// the catalog where that keeps more, never less.
    private func pointsInUse(_ result: inout Result, dryRun: Bool) throws -> Set<String> {
        let catalogPoints = try repository.catalog.allPointManifests()
        let manifestPoints = Dictionary(
            try repository.manifests.allPoints().map { ($0.point.id, $0) }, uniquingKeysWith: { a, _ in a })
        let known = Set(catalogPoints.map(\.point.id))
        let unknown = manifestPoints.values.filter { $0.isLive && !known.contains($0.point.id) }
        if let first = unknown.first {
            throw VaultError(
                .needsRepair,
                "the catalog does not know \(unknown.count) restorable point(s) that the repository's manifests hold (\(first.point.serverName)/\(first.point.name) among them): it is missing, replaced or older than the repository. Nothing was removed; rebuild it with 'vaultctl repair --rebuild-catalog'"
            )
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

extension Repository {
    /// Collects garbage after `what` freed points (retention, purge, a backup that ran out of
    /// space). When collection cannot run, the points are gone all the same and their space
    /// comes back at the next `vaultctl gc`: that is said in the log and returned (for the
    /// command's output, `--json` and a failed point's error), never swallowed.
    @discardableResult
    func collectGarbage(after what: String) -> String? {
        let why: String
        do {
            if try GarbageCollector(repository: self).collect().ran { return nil }
            why = "a backup or another collection is running"
        } catch {
            why = "\(error)"
        }
        let problem = "garbage collection after \(what) did not run: \(why); 'vaultctl gc' frees the space later"
        Logger(label: "vaultfs.gc").warning("\(problem)")
        return problem
    }
}
