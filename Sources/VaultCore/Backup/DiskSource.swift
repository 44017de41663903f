internal import CSupport
import Glibc

/// A server's disk as a backup finds it: it is captured once per point, inside the freeze
/// window, and the capture is what the backup reads.
protocol DiskOrigin: Sendable {
    var name: String { get }
    /// Whether `capture` takes the disk's state at once (a snapshot), so that the disk can be
    /// read after the thaw hook; otherwise the whole read happens inside the freeze window.
    var capturesInstantly: Bool { get }
    /// The disk's state for point `pointId`.
    func capture(pointId: String) throws -> any CapturedDisk
    /// Undoes what `capture` left for a point that failed (its snapshot); never throws.
    func discard(pointId: String)
    /// Removes the snapshots (or dirty bitmaps) of known points that no incremental can use
    /// any more: those of other repositories' points and those vaultfs did not make stay.
    /// Returns a line for each that could not be removed.
    func tidy(_ kept: KeptPoints) -> [String]
    /// What `tidy` would remove, one description each.
    func doomed(_ kept: KeptPoints) throws -> [String]
}

/// Which of a server's points its disks keep snapshots or bitmaps for.
struct KeptPoints {
    /// The points the next incrementals may start from (`FingerprintStore.parentsToKeep`),
    /// and those being made.
    var parents: Set<String>
    /// Those and every point made since the oldest of them: a dirty bitmap holds the changes
    /// from its point to the next, so the changes since a parent are the union of the bitmaps
    /// of every point from it on.
    var recent: Set<String>
    /// Every point of the server this repository knows, deleted and failed ones too.
    var known: Set<String>

    init(_ points: [Point]) {
        // A point being made, and the parent it reads from, keep theirs: its backup may be
        // running on another host.
        let making = points.filter { $0.status == .creating }.flatMap { [$0.id] + ($0.parentId.map { [$0] } ?? []) }
        let parents = FingerprintStore.parentsToKeep(points).union(making)
        let oldest = points.filter { parents.contains($0.id) }.map(\.startedAt).min()
        self.parents = parents
        recent = parents.union(points.filter { oldest != nil && $0.startedAt >= oldest! }.map(\.id))
        known = Set(points.map(\.id))
    }
}

/// A disk's captured state, which one backup reads.
protocol CapturedDisk: Sendable {
    var name: String { get }
    /// How the disk is named in messages: its path, or `rbd:POOL/IMAGE`.
    var path: String { get }
    var size: Int64 { get }
    /// Whether reads go past the page cache; otherwise `prefetch` keeps the disk busy.
    var readsDirect: Bool { get }
    func read(into buffer: UnsafeMutableRawBufferPointer, offset: Int64, length: Int) throws -> Int
    func prefetch(offset: Int64, length: Int)
    /// What to read: against the parent point `parent` (its id and this disk's size in it)
    /// for an incremental.
    func readPlan(chunkSize: Int, parent: (id: String, size: Int64)?) throws -> ReadPlan
}

/// Which chunk positions of a disk a backup reads, and what the others hold.
struct ReadPlan: Equatable {
    /// The positions to read, ascending.
    var positions: [Int]
    /// Positions that read as zeros without being read (discarded since the parent).
    var zeroed: [Int] = []
    /// Whether every position not listed holds what the parent point holds there (a diff
    /// since the parent's snapshot); otherwise those positions are holes.
    var carriesParent = false
    /// Why a disk that could be diffed is read in full, for stderr and the point's history.
    var note: String?

    /// The positions that overlap `extents` (offset, length), ascending, each once.
    static func positions(touching extents: [(offset: Int64, length: Int64)], chunkSize: Int, count: Int) -> [Int] {
        var marked = [Bool](repeating: false, count: count)
        // Extents come from a cluster or a qemu: whatever their numbers, nothing overflows.
        let limit = Int64(count) * Int64(chunkSize)
        for extent in extents where extent.length > 0 && extent.offset >= 0 && extent.offset < limit {
            let first = Int(extent.offset / Int64(chunkSize))
            let last = Int((extent.offset + min(extent.length, limit - extent.offset) - 1) / Int64(chunkSize))
            for position in first...min(last, count - 1) { marked[position] = true }
        }
        return marked.indices.filter { marked[$0] }
    }
}

/// One disk of a server opened for reading: a block device or a raw image file.
///
/// A backup reads each disk once, so it reads past the page cache (O_DIRECT) where the disk
/// takes it: the server's cached files stay cached, and no page is filled only to be copied
/// out and dropped.
final class DiskSource: DiskOrigin, CapturedDisk {
    let name: String
    let path: String
    private let fd: Int32
    let size: Int64
    /// The disk opened with O_DIRECT too, or -1 when it refuses that at open or at a first
    /// read (some FUSE filesystems; tmpfs before Linux 6.6): then reads go through the page
    /// cache, ahead of the workers.
    private let directFd: Int32
    /// What O_DIRECT asks of a read's buffer, offset and length: the largest logical block
    /// size in use (4 KiB).
    static let alignment = 4096

    /// `direct: false` reads through the page cache whatever the disk takes.
    init(name: String, path: String, server: String, direct: Bool = true) throws {
        self.name = name
        self.path = path
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code: VaultError.Code =
                errno == ENOENT || errno == ENXIO || errno == ENODEV
                ? .diskMissing
                : errno == EACCES || errno == EPERM ? .permissionDenied : .io
            throw VaultError(
                code,
                "cannot read disk '\(name)' of server '\(server)' (\(path)): \(Posix.message(errno))")
        }
        var st = stat()
        let kind = fstat(fd, &st) == 0 ? st.st_mode & S_IFMT : 0
        guard kind == S_IFREG || kind == S_IFBLK else {
            close(fd)
            throw VaultError.invalid(
                "disk '\(name)' of server '\(server)' (\(path)) is not a block device or an image file")
        }
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            close(fd)
            throw Posix.error("cannot size disk", path)
        }
        self.fd = fd
        size = Int64(end)
        directFd = direct ? Self.openDirect(fd, path: path) : -1
    }

    /// The same open file (through /proc, so never another one put at `path` since) with
    /// O_DIRECT, once one aligned read of its start succeeds; or -1.
    private static func openDirect(_ fd: Int32, path: String) -> Int32 {
        guard let direct = try? Posix.open("/proc/self/fd/\(fd)", O_RDONLY | vfs_o_direct) else { return -1 }
        let probe = UnsafeMutableRawPointer.allocate(byteCount: alignment, alignment: alignment)
        defer { probe.deallocate() }
        guard (try? Posix.preadBlocks(direct, probe, alignment, capacity: alignment, 0, path: path)) != nil else {
            close(direct)
            return -1
        }
        return direct
    }

    deinit {
        close(fd)
        if directFd >= 0 { close(directFd) }
    }

    /// Whether reads go past the page cache; otherwise `prefetch` keeps the disk busy.
    var readsDirect: Bool { directFd >= 0 }

    /// Reads the `length` bytes at `offset` into `buffer`, whose start is `alignment`-aligned
    /// and which holds `length` rounded up to it; returns how many were read (fewer only where
    /// the disk ends). A direct read the disk refuses is made again through the page cache.
    func read(into buffer: UnsafeMutableRawBufferPointer, offset: Int64, length: Int) throws -> Int {
        if directFd >= 0 {
            let rounded = (length + Self.alignment - 1) / Self.alignment * Self.alignment
            if let n = try Posix.preadBlocks(
                directFd, buffer.baseAddress!, length, capacity: rounded, offset, path: path)
            {
                return n
            }
        }
        return try Posix.pread(fd, buffer.baseAddress!, length, offset, path: path)
    }

    /// Asks the kernel to start reading `length` bytes at `offset` into the page cache, so
    /// the disk works while the workers hash and compress what they read before. Only a hint:
    /// a source that cannot take it is read as usual.
    func prefetch(offset: Int64, length: Int) {
        _ = posix_fadvise(fd, off_t(offset), off_t(length), POSIX_FADV_WILLNEED)
    }

    /// A file or device is read as it is, inside the freeze window.
    var capturesInstantly: Bool { false }
    func capture(pointId: String) throws -> any CapturedDisk { self }
    func discard(pointId: String) {}
    func tidy(_ kept: KeptPoints) -> [String] { [] }
    func doomed(_ kept: KeptPoints) throws -> [String] { [] }

    /// Every chunk that holds data; an incremental finds the unchanged ones by their
    /// fingerprints.
    func readPlan(chunkSize: Int, parent: (id: String, size: Int64)?) throws -> ReadPlan {
        ReadPlan(positions: dataPositions(chunkSize: chunkSize))
    }

    /// Marks the chunk positions that overlap data, skipping holes with SEEK_DATA and
    /// SEEK_HOLE so they are never read. Sources without hole support are all data.
    func dataPositions(chunkSize: Int) -> [Int] {
        guard let marked = Posix.dataPositions(fd, size: size, chunkSize: chunkSize) else {
            return Array(0..<ChunkMap.positions(diskSize: size, chunkSize: chunkSize))
        }
        return marked.indices.filter { marked[$0] }
    }
}
