import Foundation

/// A disk that is a Ceph RBD image (`rbd:POOL/IMAGE`). Every point is a snapshot of it,
/// `vaultfs-<point id>`, made inside the freeze window; the backup reads the snapshot, never
/// the live image, so the guest is frozen for the snapshot alone. An incremental reads only
/// what changed since its parent's snapshot (`rbd_diff_iterate2`).
final class RbdDisk: DiskOrigin {
    let name: String
    let spec: RbdSpec
    private let server: String
    private let pool: RbdPool
    static let snapshotPrefix = "vaultfs-"

    /// Connects to the cluster and opens the image: a cluster that does not answer, a missing
    /// pool or image, or a client without access fails here, before anything is stored.
    init(name: String, spec: RbdSpec, access: CephAccess, server: String) throws {
        self.name = name
        self.spec = spec
        self.server = server
        do {
            pool = try RbdPool(access, pool: spec.pool)
            _ = try RbdImage(pool, name: spec.image)
        } catch let error as VaultError {
            throw VaultError(
                error.code, "cannot read disk '\(name)' of server '\(server)' (\(spec.description)): \(error.message)")
        }
    }

    static func snapshot(of pointId: String) -> String { snapshotPrefix + pointId }

    var capturesInstantly: Bool { true }

    /// The image itself, writable, for making, listing and removing snapshots. Opened for
    /// each such step and closed after it: making or removing a snapshot takes the image's
    /// exclusive lock, which closing gives back at once (to a VM that writes the image, say).
    /// A process killed while it held it would keep the image's writers waiting some 30 s,
    /// until the cluster takes it for dead; a handle kept open through the whole read would
    /// make that every killed backup's.
    private func image() throws -> RbdImage { try RbdImage(pool, name: spec.image) }

    func capture(pointId: String) throws -> any CapturedDisk {
        let snapshot = Self.snapshot(of: pointId)
        let snapshots = try { () throws -> Set<String> in
            let image = try image()
            try image.createSnapshot(snapshot)
            return Set(try image.snapshotNames())
        }()
        FaultInjection.reached("snapshot-made")
        return try RbdCapture(
            name: name, spec: spec, image: try RbdImage(pool, name: spec.image, snapshot: snapshot),
            snapshots: snapshots)
    }

    func discard(pointId: String) {
        try? image().removeSnapshot(Self.snapshot(of: pointId))
    }

    func tidy(_ kept: KeptPoints) -> [String] {
        let image: RbdImage
        let doomed: [String]
        do {
            image = try self.image()
            doomed = try doomedSnapshots(image, kept)
        } catch { return ["\(error)"] }
        var problems: [String] = []
        for snapshot in doomed {
            do { try image.removeSnapshot(snapshot) } catch { problems.append("\(error)") }
        }
        return problems
    }

    func doomed(_ kept: KeptPoints) throws -> [String] {
        try doomedSnapshots(try image(), kept).map { "\(spec.description)@\($0)" }
    }

    /// The `vaultfs-` snapshots of known points no incremental can start from.
    private func doomedSnapshots(_ image: RbdImage, _ kept: KeptPoints) throws -> [String] {
        try image.snapshotNames().filter { snapshot in
            guard snapshot.hasPrefix(Self.snapshotPrefix) else { return false }
            let id = String(snapshot.dropFirst(Self.snapshotPrefix.count))
            return kept.known.contains(id) && !kept.parents.contains(id)
        }
    }
}

/// One point's snapshot of an RBD image, as its backup reads it.
final class RbdCapture: CapturedDisk {
    let name: String
    private let spec: RbdSpec
    private let image: RbdImage
    /// The image's snapshots when this one was made.
    private let snapshots: Set<String>
    let size: Int64

    init(name: String, spec: RbdSpec, image: RbdImage, snapshots: Set<String>) throws {
        self.name = name
        self.spec = spec
        self.image = image
        self.snapshots = snapshots
        size = try image.size()
    }

    var path: String { spec.description }
    /// librbd reads from the cluster, past this host's page cache.
    var readsDirect: Bool { true }
    func prefetch(offset: Int64, length: Int) {}

    func read(into buffer: UnsafeMutableRawBufferPointer, offset: Int64, length: Int) throws -> Int {
        var done = 0
        while done < length {
            let n = try image.read(
                into: buffer.baseAddress! + done, offset: offset + Int64(done), length: length - done)
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// `VAULT_RBD_DIFF=off` reads every allocated extent even when the parent's snapshot is
    /// there: for comparing the two (`make bench`).
    static var diffing: Bool { ProcessInfo.processInfo.environment["VAULT_RBD_DIFF"] != "off" }

    func readPlan(chunkSize: Int, parent: (id: String, size: Int64)?) throws -> ReadPlan {
        let count = ChunkMap.positions(diskSize: size, chunkSize: chunkSize)
        var note: String?
        if let parent, Self.diffing {
            let from = RbdDisk.snapshot(of: parent.id)
            if parent.size != size {
                note = "disk '\(name)' changed size since its parent point: every allocated extent is read"
            } else if !snapshots.contains(from) {
                note =
                    "the snapshot \(from) of disk '\(name)' (the parent point's) is gone: every allocated extent is read"
            } else if let extents = try? image.diff(from: from, wholeObject: false) {
                let changed = extents.filter(\.exists).map { (offset: $0.offset, length: $0.length) }
                let discarded = extents.filter { !$0.exists }
                // A discard that covers whole chunks needs no read; a chunk it covers in part does.
                let edges = discarded.flatMap { Self.partialEdges($0, chunkSize: chunkSize, size: size) }
                let read = ReadPlan.positions(touching: changed + edges, chunkSize: chunkSize, count: count)
                let reading = Set(read)
                let zeroed = Set(discarded.flatMap { Self.wholeChunks($0, chunkSize: chunkSize, size: size) })
                    .subtracting(reading)
                return ReadPlan(positions: read, zeroed: zeroed.sorted(), carriesParent: true)
            } else {
                // Removed meanwhile (by hand, or by another host's gc), or unreadable: what
                // changed is not known, so everything is read.
                note =
                    "the changes of disk '\(name)' since the snapshot \(from) cannot be listed: every allocated extent is read"
            }
        }
        let allocated = try image.diff(from: nil, wholeObject: image.hasFastDiff).filter(\.exists)
        return ReadPlan(
            positions: ReadPlan.positions(
                touching: allocated.map { ($0.offset, $0.length) }, chunkSize: chunkSize, count: count),
            note: note)
    }

    /// The chunk positions an extent covers whole.
    static func wholeChunks(_ extent: RbdImage.Extent, chunkSize: Int, size: Int64) -> [Int] {
        let size64 = Int64(chunkSize)
        guard extent.offset >= 0, extent.offset < size, extent.length > 0 else { return [] }
        let end = extent.offset + min(extent.length, size - extent.offset)
        var first = (extent.offset + size64 - 1) / size64
        var result: [Int] = []
        while first * size64 < end {
            let chunkEnd = min((first + 1) * size64, size)
            if chunkEnd <= end { result.append(Int(first)) } else { break }
            first += 1
        }
        return result
    }

    /// The parts of an extent in chunks it covers only partly, as extents.
    static func partialEdges(_ extent: RbdImage.Extent, chunkSize: Int, size: Int64) -> [(offset: Int64, length: Int64)]
    {
        let whole = Set(wholeChunks(extent, chunkSize: chunkSize, size: size))
        let size64 = Int64(chunkSize)
        guard extent.offset >= 0, extent.offset < size, extent.length > 0 else { return [] }
        let end = extent.offset + min(extent.length, size - extent.offset)
        let first = extent.offset / size64
        let last = (end - 1) / size64
        return Set([first, last]).filter { !whole.contains(Int($0)) }.map { ($0 * size64, 1) }
    }
}
