import Glibc

/// One disk of a server opened for reading: a block device or a raw image file.
final class DiskSource {
    let name: String
    let path: String
    let fd: Int32
    let size: Int64

    init(name: String, path: String, server: String) throws {
        self.name = name
        self.path = path
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code: VaultError.Code = errno == ENOENT || errno == ENXIO || errno == ENODEV ? .diskMissing
                : errno == EACCES || errno == EPERM ? .permissionDenied : .io
            throw VaultError(code,
                             "cannot read disk '\(name)' of server '\(server)' (\(path)): \(Posix.message(errno))")
        }
        var st = stat()
        let kind = fstat(fd, &st) == 0 ? st.st_mode & S_IFMT : 0
        guard kind == S_IFREG || kind == S_IFBLK else {
            close(fd)
            throw VaultError.invalid("disk '\(name)' of server '\(server)' (\(path)) is not a block device or an image file")
        }
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            close(fd)
            throw Posix.error("cannot size disk", path)
        }
        self.fd = fd
        size = Int64(end)
    }

    deinit { close(fd) }

    /// Asks the kernel to start reading `length` bytes at `offset` into the page cache, so
    /// the disk works while the workers hash and compress what they read before. Only a hint:
    /// a source that cannot take it is read as usual.
    func prefetch(offset: Int64, length: Int) {
        _ = posix_fadvise(fd, off_t(offset), off_t(length), POSIX_FADV_WILLNEED)
    }

    /// Marks the chunk positions that overlap data, skipping holes with SEEK_DATA and
    /// SEEK_HOLE so they are never read. Sources without hole support are all data.
    func dataPositions(chunkSize: Int) -> [Int] {
        let count = ChunkMap.positions(diskSize: size, chunkSize: chunkSize)
        var marked = [Bool](repeating: false, count: count)
        var offset: off_t = 0
        while offset < size {
            let data = lseek(fd, offset, Posix.seekData)
            if data < 0 {
                if errno == ENXIO { break }
                return Array(0..<count)
            }
            var hole = lseek(fd, data, Posix.seekHole)
            if hole < 0 { hole = off_t(size) }
            let first = Int(Int64(data) / Int64(chunkSize))
            let last = Int((Int64(hole) - 1) / Int64(chunkSize))
            if first >= count { break }  // the source grew after it was sized; its new end is not part of this backup
            if first <= last { for position in first...min(last, count - 1) { marked[position] = true } }
            offset = hole
        }
        return marked.indices.filter { marked[$0] }
    }
}
