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

    static func message(_ code: Int32) -> String { String(cString: strerror(code)) }

    static func error(_ what: String, _ path: String, _ code: Int32 = errno) -> VaultError {
        let kind: VaultError.Code
        switch code {
        case ENOENT: kind = .notFound
        case ENOSPC, EDQUOT: kind = .noSpace
        default: kind = .io
        }
        return VaultError(kind, "\(what) \(path): \(message(code))")
    }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644, what: String = "cannot open") throws -> Int32 {
        let fd = retrying { Glibc.open(path, flags | O_CLOEXEC, mode) }
        if fd < 0 { throw error(what, path) }
        return fd
    }

    /// Reads exactly `count` bytes at `offset` unless the file ends first; returns bytes read.
    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: Int64, path: String) throws -> Int {
        var done = 0
        while done < count {
            let n = retrying { Glibc.pread(fd, buffer + done, count - done, off_t(offset) + off_t(done)) }
            if n < 0 { throw error("cannot read", path) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = retrying { Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done) }
            if n < 0 { throw error("cannot write", path) }
            done += n
        }
    }

    static func pwriteAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = retrying { Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done)) }
            if n < 0 { throw error("cannot write", path) }
            done += n
        }
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("cannot stat", path) }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let n = try bytes.withUnsafeMutableBytes { try pread(fd, $0.baseAddress!, $0.count, 0, path: path) }
        if n != bytes.count { bytes.removeLast(bytes.count - n) }
        return bytes
    }

    /// Writes a whole file through a temporary name and a rename, so readers see the old
    /// content or the new, never a mix.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8], sync: Bool = true) throws {
        let temporary = "\(path).tmp-\(getpid())"
        let fd = try open(temporary, O_WRONLY | O_CREAT | O_TRUNC, what: "cannot create")
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

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Whether `path` names a directory (following links).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw error("cannot create directory", path) }
    }

    /// Removes a directory tree; used only for a point's own map folder.
    static func removeTree(_ path: String) {
        guard let dir = opendir(path) else { unlink(path); return }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            let child = "\(path)/\(name)"
            if isDirectory(child) { removeTree(child) } else { unlink(child) }
        }
        closedir(dir)
        rmdir(path)
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        let cwd = String(cString: buffer)
        return path == "." ? cwd : "\(cwd)/\(path)"
    }
}
