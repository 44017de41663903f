import Glibc

/// Thin, EINTR-safe wrappers over the system calls the core uses, turning failures into
/// `VaultError`s that name the file involved.
public enum Posix {
    /// lseek whence values behind _GNU_SOURCE, which Swift's Glibc module does not expose.
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    /// Retries a call returning -1 with EINTR.
    static func retrying<T: BinaryInteger>(_ body: () -> T) -> T {
        while true {
            let result = body()
            if result >= 0 || errno != EINTR { return result }
        }
    }

    public static func message(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// A failed call on `path` as a domain error: the one map from errno to `VaultError.Code`.
    public static func error(_ what: String, _ path: String, _ code: Int32 = errno) -> VaultError {
        let kind: VaultError.Code
        switch code {
        case ENOENT: kind = .notFound
        case ENOSPC, EDQUOT: kind = .noSpace
        case EACCES, EPERM: kind = .permissionDenied
        case EROFS: kind = .readOnly
        default: kind = .io
        }
        return VaultError(kind, "\(what) \(path): \(message(code))")
    }

    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o600, what: String = "cannot open") throws
        -> Int32
    {
        let fd = retrying { Glibc.open(path, flags | O_CLOEXEC, mode) }
        if fd < 0 { throw error(what, path) }
        return fd
    }

    /// Creates a new file (never following a link, never reusing a name) with exactly `mode`,
    /// whatever the umask.
    static func createFile(_ path: String, mode: mode_t, what: String = "cannot create") throws -> Int32 {
        let fd = try open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode & 0o777, what: what)
        if fchmod(fd, mode) != 0 {
            let failure = error("cannot set the mode of", path)
            close(fd)
            unlink(path)
            throw failure
        }
        return fd
    }

    /// A name beside `path` that no other writer uses: `path.tmp-PID-RANDOM`.
    static func temporaryName(for path: String) -> String {
        "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Reads exactly `count` bytes at `offset` unless the file ends first; returns bytes read.
    public static func pread(
        _ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: Int64, path: String
    ) throws -> Int {
        guard let n = try preadBlocks(fd, buffer, count, capacity: count, offset, path: path) else {
            throw error("cannot read", path, EINVAL)
        }
        return n
    }

    /// Reads at least `count` bytes at `offset` unless the file ends first, asking for up to
    /// `capacity` (what `buffer` holds: an O_DIRECT read asks for whole blocks, its end
    /// included); returns bytes read, at most `count`, or nil when the descriptor refuses the
    /// request (EINVAL, as O_DIRECT does for a misaligned one).
    static func preadBlocks(
        _ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, capacity: Int,
        _ offset: Int64, path: String
    ) throws -> Int? {
        var done = 0
        while done < count {
            let n = retrying { Glibc.pread(fd, buffer + done, capacity - done, off_t(offset) + off_t(done)) }
            if n < 0 {
                if errno == EINVAL { return nil }
                throw error("cannot read", path)
            }
            if n == 0 { break }
            done += n
        }
        return min(done, count)
    }

    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = retrying { Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done) }
            if n < 0 { throw error("cannot write", path) }
            done += n
        }
    }

    public static func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = retrying {
                Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n < 0 { throw error("cannot write", path) }
            done += n
        }
    }

    /// Reads a whole file; one larger than `limit` bytes is refused as damaged before any
    /// allocation, so a corrupt size can never cost memory.
    static func readFile(_ path: String, limit: Int = Int.max) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("cannot stat", path) }
        guard Int(st.st_size) <= limit else {
            throw VaultError(
                .corrupt, "\(path) is damaged: it holds \(st.st_size) bytes, more than the \(limit) its kind may have")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let n = try bytes.withUnsafeMutableBytes { try pread(fd, $0.baseAddress!, $0.count, 0, path: path) }
        if n != bytes.count { bytes.removeLast(bytes.count - n) }
        return bytes
    }

    /// Writes a whole file through a temporary name and a rename, so readers see the old
    /// content or the new, never a mix.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t, sync: Bool = true) throws {
        let temporary = temporaryName(for: path)
        let fd = try createFile(temporary, mode: mode)
        do {
            try bytes.withUnsafeBytes { try writeAll(fd, $0, path: temporary) }
            if sync && fsync(fd) != 0 { throw error("cannot sync", temporary) }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        if rename(temporary, path) != 0 {
            let failure = error("cannot rename", temporary)
            unlink(temporary)
            throw failure
        }
    }

    /// Anonymous memory for large `O_DIRECT` reads, on 2 MiB boundaries and marked for
    /// transparent huge pages, so a read of a few MiB reaches the disk as one request of a few
    /// segments instead of one per 4 KiB page. Only a hint: where huge pages are off or none is
    /// free, the memory is the same, in small pages. Nil when no memory is to be had.
    static func mapForReads(byteCount: Int) -> UnsafeMutableRawBufferPointer? {
        let huge = 2 << 20
        let length = (byteCount + huge - 1) / huge * huge
        // Map one huge page more than asked, so the part returned can start on a boundary.
        guard let raw = mmap(nil, length + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            raw != MAP_FAILED
        else { return nil }
        let skip = (huge - Int(bitPattern: raw) % huge) % huge
        if skip > 0 { munmap(raw, skip) }
        // skip < huge, so a tail always remains past the part returned.
        munmap(raw + skip + length, huge - skip)
        _ = madvise(raw + skip, length, MADV_HUGEPAGE)
        return UnsafeMutableRawBufferPointer(start: raw + skip, count: length)
    }

    /// Returns memory from `mapForReads`.
    static func unmap(_ buffer: UnsafeMutableRawBufferPointer) {
        munmap(buffer.baseAddress, buffer.count)
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Bytes a file holds (0 when it is gone).
    static func fileSize(_ path: String) -> Int64 {
        var st = stat()
        return lstat(path, &st) == 0 ? Int64(st.st_size) : 0
    }

    /// Files named `*.tmp-*` in `directory` last changed more than `age` seconds before `now`.
    static func staleTemporaries(in directory: String, olderThan age: Double, now: Double) -> [String] {
        listDirectory(directory).filter { $0.contains(".tmp-") }.map { "\(directory)/\($0)" }.filter { path in
            var st = stat()
            return lstat(path, &st) == 0 && Double(st.st_mtim.tv_sec) <= now - age
        }
    }

    /// The memory this process may use, in bytes: the machine's physical memory, or less
    /// when its control group (v2 `memory.max`, v1 `memory.limit_in_bytes`) sets a lower
    /// limit. `Int.max` when neither can be read.
    public static var physicalMemory: Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        var machine = Int.max
        if pages > 0 && pageSize > 0 {
            let product = pages.multipliedReportingOverflow(by: pageSize)
            if !product.overflow { machine = product.partialValue }
        }
        return min(machine, controlGroupMemoryLimit() ?? Int.max)
    }

    /// Up to `limit` bytes of a file of /proc or /sys, whose size `stat` does not tell; nil
    /// when it cannot be read.
    static func readKernelFile(_ path: String, limit: Int) -> [UInt8]? {
        guard let fd = try? open(path, O_RDONLY) else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        var count = 0
        while count < limit {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, limit - count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                if n < 0 { return nil }
                break
            }
            count += n
        }
        return Array(bytes.prefix(count))
    }

    /// The memory limit of this process's control group, when one is set and readable.
    static func controlGroupMemoryLimit(cgroups: String = "/proc/self/cgroup", root: String = "/sys/fs/cgroup") -> Int?
    {
        guard let bytes = readKernelFile(cgroups, limit: 1 << 16) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, !fields[2].contains("..") else { continue }
            let file: String
            if fields[0] == "0" && fields[1].isEmpty {
                file = "\(root)\(fields[2])/memory.max"
            } else if fields[1].split(separator: ",").contains("memory") {
                file = "\(root)/memory\(fields[2])/memory.limit_in_bytes"
            } else {
                continue
            }
            guard let text = readKernelFile(file, limit: 64) else { continue }
            // "max" (v2) or a number near Int64.max (v1) means no limit.
            if let limit = Int(String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
                limit > 0, limit < Int.max / 2
            {
                return limit
            }
        }
        return nil
    }

    /// Whether `path` names a directory (following links).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates a directory with exactly `mode` (set again after mkdir, so the umask cannot
    /// widen or narrow it); an existing one is left as it is.
    static func makeDirectory(_ path: String, mode: mode_t) throws {
        if mkdir(path, mode & 0o777) != 0 {
            if errno == EEXIST { return }
            throw error("cannot create directory", path)
        }
        if chmod(path, mode) != 0 { throw error("cannot set the mode of", path) }
    }

    /// Makes `path` and the folders above it that are missing, each with `mode`.
    static func makeDirectories(_ path: String, mode: mode_t) throws {
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            let parent = String(path[..<slash])
            if !exists(parent) { try makeDirectories(parent, mode: mode) }
        }
        try makeDirectory(path, mode: mode)
    }

    /// Removes a directory tree; used only for folders vaultfs makes (a point's maps, a
    /// server's fingerprints). Never follows a symbolic link: a link found in the tree is
    /// removed itself, and each folder is opened relative to the one holding it.
    static func removeTree(_ path: String) { removeEntry(AT_FDCWD, path) }

    private static func removeEntry(_ parent: Int32, _ name: String) {
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            unlinkat(parent, name, 0)
            return
        }
        guard let dir = fdopendir(fd) else {
            close(fd)
            return
        }
        for child in entries(dir) { removeEntry(fd, child) }
        closedir(dir)
        unlinkat(parent, name, AT_REMOVEDIR)
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        return entries(dir)
    }

    /// The names in an open directory but "." and "..".
    private static func entries(_ dir: OpaquePointer) -> [String] {
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Which `chunkSize` positions of the first `size` bytes of `fd` overlap data, found with
    /// SEEK_DATA and SEEK_HOLE without reading anything; nil when the file cannot say (a
    /// device, a filesystem without hole support), so all of it counts as data.
    static func dataPositions(_ fd: Int32, size: Int64, chunkSize: Int) -> [Bool]? {
        let count = Int((size + Int64(chunkSize) - 1) / Int64(chunkSize))
        var marked = [Bool](repeating: false, count: count)
        var offset: off_t = 0
        while offset < size {
            let data = lseek(fd, offset, seekData)
            if data < 0 {
                if errno == ENXIO { break }
                return nil
            }
            var hole = lseek(fd, data, seekHole)
            if hole < 0 { hole = off_t(size) }
            let first = Int(Int64(data) / Int64(chunkSize))
            let last = Int((Int64(hole) - 1) / Int64(chunkSize))
            if first >= count { break } // the file grew after it was sized; its new end is not asked about
            if first <= last { for position in first...min(last, count - 1) { marked[position] = true } }
            offset = hole
        }
        return marked
    }

    /// `path` with every symbolic link resolved and made absolute (realpath), or nil when
    /// some part of it cannot be looked at.
    public static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    public static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        let cwd = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return path == "." ? cwd : "\(cwd)/\(path)"
    }
}
