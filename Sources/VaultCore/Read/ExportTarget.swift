import Glibc

/// Where an export writes, opened before any chunk is read so a bad output fails at once.
///
/// - `-` is standard output.
/// - A symlink is followed to its target, as `dd of=` and `cp` do (`-o /dev/stdout` streams).
/// - A FIFO, character or block device is written in place, every byte.
/// - A regular file (or a new name) is written to a new temporary file beside it, created
///   with O_EXCL|O_NOFOLLOW under a random name, and renamed over it only when complete.
///   Nothing that is not a regular file is ever replaced.
public final class ExportTarget {
    public let fd: Int32
    /// The name the user gave, for messages.
    public let name: String
    /// True for a new regular file, which gets holes where the disk is zero.
    public let isFile: Bool
    private let temporary: String?
    private let destination: String
    private var open = true

    private init(fd: Int32, name: String, isFile: Bool, temporary: String?, destination: String) {
        self.fd = fd
        self.name = name
        self.isFile = isFile
        self.temporary = temporary
        self.destination = destination
    }

    deinit { abandon() }

    public static func open(_ output: String) throws -> ExportTarget {
        if output == "-" {
            return ExportTarget(
                fd: STDOUT_FILENO, name: "standard output", isFile: false, temporary: nil, destination: "-")
        }
        var st = stat()
        let exists = stat(output, &st) == 0
        if exists {
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                throw VaultError.invalid("cannot export to \(output): it is a directory; give a file name")
            case S_IFREG:
                break
            default:
                // Opened by the name given, so /proc's links (/dev/stdout) reach the pipe.
                let fd = try Posix.open(output, O_WRONLY | O_NOCTTY, what: "cannot write")
                return ExportTarget(fd: fd, name: output, isFile: false, temporary: nil, destination: output)
            }
        }
        let destination = exists ? resolvedPath(output) : resolve(output)
        let slash = destination.lastIndex(of: "/")!
        let folder = slash == destination.startIndex ? "/" : String(destination[..<slash])
        let base = destination[destination.index(after: slash)...]
        let temporary = "\(folder)/.\(base).vaultfs-partial-\(UInt64.random(in: 0...UInt64.max))"
        let fd = try Posix.createFile(temporary, mode: 0o600, what: "cannot write beside")
        return ExportTarget(fd: fd, name: output, isFile: true, temporary: temporary, destination: destination)
    }

    /// The path a symlink chain ends at (which may not exist yet), or `path` itself.
    private static func resolve(_ path: String) -> String {
        var current = Posix.absolutePath(path)
        for _ in 0..<40 {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current, &buffer, buffer.count - 1)
            guard n > 0 else { return current }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasPrefix("/") {
                current = target
            } else {
                let slash = current.lastIndex(of: "/")!
                current = String(current[...slash]) + target
            }
        }
        return current
    }

    private static func resolvedPath(_ path: String) -> String {
        Posix.realPath(path) ?? Posix.absolutePath(path)
    }

    /// Makes the export durable and puts a file in place; call once, after the last write.
    public func commit() throws {
        guard open else { return }
        open = false
        defer { if fd != STDOUT_FILENO { close(fd) } }
        guard let temporary else { return }
        if fsync(fd) != 0 {
            let error = Posix.error("cannot write", name)
            unlink(temporary)
            throw error
        }
        var st = stat()
        if lstat(destination, &st) == 0 && st.st_mode & S_IFMT != S_IFREG {
            unlink(temporary)
            throw VaultError.invalid(
                "\(name) was replaced by something that is not a regular file during the export; nothing was written")
        }
        if rename(temporary, destination) != 0 {
            let error = Posix.error("cannot put the export in place at", destination)
            unlink(temporary)
            throw error
        }
    }

    /// Drops a failed export: a temporary file is removed, what was there stays.
    public func abandon() {
        guard open else { return }
        open = false
        if fd != STDOUT_FILENO { close(fd) }
        if let temporary { unlink(temporary) }
    }
}
