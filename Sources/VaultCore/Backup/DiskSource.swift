internal import CSupport
import Glibc

/// One disk of a server opened for reading: a block device or a raw image file.
///
/// A backup reads each disk once, so it reads past the page cache (O_DIRECT) where the disk
/// takes it: the server's cached files stay cached, and no page is filled only to be copied
/// out and dropped.
final class DiskSource: Sendable {
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

    /// Marks the chunk positions that overlap data, skipping holes with SEEK_DATA and
    /// SEEK_HOLE so they are never read. Sources without hole support are all data.
    func dataPositions(chunkSize: Int) -> [Int] {
        guard let marked = Posix.dataPositions(fd, size: size, chunkSize: chunkSize) else {
            return Array(0..<ChunkMap.positions(diskSize: size, chunkSize: chunkSize))
        }
        return marked.indices.filter { marked[$0] }
    }
}
