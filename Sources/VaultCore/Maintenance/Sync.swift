import Foundation
import Synchronization

/// `vaultctl sync`: copies restorable points (all, or one vault's) from one repository to
/// another, a folder or a bucket either way: the off-site copy.
///
/// The target is a mirror of the source: it has the source's id, chunk size, encryption and
/// key, so chunks, maps and manifests are copied as they are (sealed ones stay sealed under
/// the one key; nothing is decrypted on the way), by name, skipping what the target has. A
/// location without a repository is made the source's mirror first; a repository that is not
/// one is refused. Chunks go first, then a point's maps, then its manifest, so a sync cut off
/// anywhere leaves every point in the target whole or absent, and the next sync finishes it.
public enum Sync {
    public struct Report: Codable, Sendable {
        public var points = 0
        /// Points the target already held whole.
        public var pointsPresent = 0
        public var chunks = 0
        public var chunkBytes: Int64 = 0
        public var chunksPresent = 0
        public var maps = 0
    }

    /// Copies into `target` (made as the mirror of `source` when it holds no repository);
    /// `unlock` opens the target as it opens the source (the same key).
    public static func run(
        from source: Repository, to target: RepositoryLocation, vault: String? = nil, unlock: Unlock = .none,
        progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }
    ) throws -> Report {
        if let vault, try source.catalog.vaults().first(where: { $0.name == vault }) == nil {
            throw VaultError.notFound("no vault named '\(vault)' in \(source.location.name)")
        }
        let mirror = try openMirror(of: source, at: target, unlock: unlock)
        return try run(from: source, into: mirror, vault: vault, progress: progress)
    }

    /// Copies into `mirror` the live points of `vault` (or of every vault) that `select`
    /// takes, with the parents each needs.
    static func run(
        from source: Repository, into mirror: Repository, vault: String?,
        select: (PointManifest) -> Bool = { _ in true },
        progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }
    ) throws -> Report {
        try mirror.requireWritable("sync into it")
        // In a shared bucket a collection on any host must see the sync as it sees a backup:
        // a lease among the servers' (no server may be named ".sync").
        var lease: ObjectLease?
        if mirror.isShared {
            var holder: String?
            lease = try ObjectLease.acquire(
                mirror.objects, name: "servers/.sync", host: try mirror.hostId(), holder: &holder)
            guard lease != nil else {
                throw VaultError(
                    .busy, "another sync into \(mirror.location.name) is running on \(holder ?? "another host")")
            }
        }
        defer { lease?.release() }
        guard let lock = try mirror.lockForBackup(wait: true) else {
            throw VaultError(.busy, "garbage collection is running on \(mirror.location.name); sync when it ends")
        }
        defer { _ = lock }

        // The points to copy, parents before children, and what they need.
        let live = try source.catalog.allPointManifests().filter { $0.isLive }
        let byId = Dictionary(uniqueKeysWithValues: live.map { ($0.point.id, $0) })
        var wanted: [PointManifest] = []
        var seen = Set<String>()
        func add(_ manifest: PointManifest) {
            guard seen.insert(manifest.point.id).inserted else { return }
            if let parent = manifest.point.parentId.flatMap({ byId[$0] }) { add(parent) }
            wanted.append(manifest)
        }
        for manifest in live.sorted(by: { $0.point.startedAt < $1.point.startedAt })
        where (vault == nil || manifest.point.vaultName == vault) && select(manifest) {
            add(manifest)
        }

        var report = Report()
        var present = Set(try mirror.objects.list(prefix: ChunkStore.prefix).map(\.key))
        let meter = ProgressMeter(label: "points synced to \(mirror.location.name)", unit: .chunks, report: progress)
        defer { meter.finish() }
        for manifest in wanted {
            let id = manifest.point.id
            let key = "\(ManifestStore.prefix)points/\(id).json"
            let sourceManifest = try source.objects.get(key, limit: ManifestStore.maxFileSize)
            // The same bytes, or the same record: a collection rewrites a manifest whose times
            // are finer than the catalog's, which is no reason to copy the point again.
            if let sourceManifest, let there = try mirror.objects.get(key, limit: ManifestStore.maxFileSize),
                there == sourceManifest
                    || (try? mirror.manifests.point(id))?.atCatalogPrecision == manifest.atCatalogPrecision
            {
                report.pointsPresent += 1
                continue
            }
            for disk in manifest.disks {
                let map = try source.maps.read(point: id, disk: disk.disk)
                var missing: [ChunkHash] = []
                for case .data(let hash) in map.entries.map(\.ref) where !present.contains(source.chunks.key(for: hash))
                {
                    missing.append(hash)
                }
                missing = Array(Set(missing))
                report.chunksPresent += map.entries.count - missing.count
                meter.addTotal(Int64(missing.count))
                let keys = missing.map { source.chunks.key(for: $0) }
                let copied = try copy(keys, from: source.objects, to: mirror.objects, meter: meter)
                present.formUnion(keys)
                report.chunks += copied.count
                report.chunkBytes += copied.bytes
                FaultInjection.reached("sync-chunks-copied")
                let mapKey = source.maps.key(id, disk.disk)
                guard let bytes = try source.objects.get(mapKey, limit: ChunkMap.maxFileSize) else {
                    throw VaultError(.corrupt, "chunk map \(source.objects.location)/\(mapKey) is missing")
                }
                try mirror.objects.put(mapKey, bytes, durable: false)
                report.maps += 1
            }
            try mirror.objects.flush()
            FaultInjection.reached("sync-maps-copied")
            guard let sourceManifest else {
                throw VaultError(.corrupt, "manifest \(source.objects.location)/\(key) is missing")
            }
            if lease?.isLost == true {
                throw VaultError(
                    .busy,
                    "sync stopped: its lease in \(mirror.location.name) lapsed while the store could not be reached; run it again"
                )
            }
            try mirror.objects.put(key, sourceManifest, durable: true)
            report.points += 1
            FaultInjection.reached("sync-manifest-copied")
        }
        // The servers and vaults of what was copied, then the target's catalog takes it all in.
        for name in Set(wanted.map(\.point.serverName)) {
            try copyIfPresent("\(ManifestStore.prefix)servers/\(name).json", source, mirror)
        }
        for name in Set(wanted.map(\.point.vaultName)) {
            try copyIfPresent("\(ManifestStore.prefix)vaults/\(name).json", source, mirror)
        }
        let vaults = try source.catalog.vaultManifests().filter { vault in
            wanted.contains { $0.point.vaultName == vault.name }
        }
        let servers = try source.catalog.serverManifests().filter { server in
            wanted.contains { $0.point.serverName == server.name }
        }
        let merged = try mirror.catalog.merge(vaults: vaults, servers: servers, points: wanted)
        if let first = merged.skipped.first, let point = byId[first]?.point {
            throw VaultError(
                .io,
                "copied, but \(merged.skipped.count) point(s) are not shown in \(mirror.location.name): \(point.serverName)/\(point.name) among them (its name is in use there, or its parent is missing)"
            )
        }
        return report
    }

    /// Opens the mirror at `target`, or, with `create`, makes it there when it holds no
    /// repository.
    static func openMirror(
        of source: Repository, at target: RepositoryLocation, unlock: Unlock, create: Bool = true
    ) throws -> Repository {
        if target == source.location || target.root == source.root {
            throw VaultError.invalid("the target is the source itself")
        }
        do {
            let mirror = try Repository(location: target, unlock: unlock)
            guard mirror.config.id == source.config.id else {
                throw VaultError.invalid(
                    "\(target.name) is another repository (id \(mirror.config.id)); sync copies into a mirror of \(source.location.name) that sync makes itself: give a new folder or prefix"
                )
            }
            // The same store under another name (a bind mount, another endpoint's spelling);
            // stores made before store ids existed have none and cannot be told apart so.
            guard mirror.config.storeId == nil || mirror.config.storeId != source.config.storeId else {
                throw VaultError.invalid("\(target.name) is the source itself, under another name")
            }
            return mirror
        } catch let error as VaultError
            where create && (error.code == .notARepository || error.code == .notFound)
        {
            // Nothing there yet (for a bucket, not even the bucket): the mirror is made.
            try Repository.createMirror(of: source.config, at: target)
            return try Repository(location: target, unlock: unlock)
        }
    }

    private static func copyIfPresent(_ key: String, _ source: Repository, _ mirror: Repository) throws {
        if let bytes = try source.objects.get(key, limit: ManifestStore.maxFileSize) {
            try mirror.objects.put(key, bytes, durable: true)
        }
    }

    /// Copies objects as they are, with as many in flight as the target takes.
    private static func copy(
        _ keys: [String], from source: any ObjectStore, to target: any ObjectStore,
        meter: ProgressMeter
    ) throws -> (count: Int, bytes: Int64) {
        let next = Atomic<Int>(0)
        let copied = Mutex<(count: Int, bytes: Int64)>((0, 0))
        let failure = Mutex<VaultError?>(nil)
        runWorkers(min(max(1, keys.count), max(source.writers, target.writers))) { _ in
            while failure.withLock({ $0 == nil }) {
                let i = next.add(1, ordering: .relaxed).oldValue
                guard i < keys.count else { break }
                do {
                    guard let bytes = try source.get(keys[i], limit: ChunkFile.maxFileSize) else {
                        throw VaultError(.corrupt, "chunk \(source.location)/\(keys[i]) is missing from the source")
                    }
                    if try target.putIfAbsent(keys[i], bytes) {
                        copied.withLock {
                            $0.count += 1
                            $0.bytes += Int64(bytes.count)
                        }
                    }
                    meter.advance(1)
                } catch {
                    failure.withLock {
                        $0 = $0 ?? (error as? VaultError ?? VaultError(.io, "copying \(keys[i])", cause: error))
                    }
                }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return copied.withLock { $0 }
    }
}
