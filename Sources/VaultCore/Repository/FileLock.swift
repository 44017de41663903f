import Glibc

/// An advisory lock on a file (flock), held while the value lives. Locks are per open file,
/// so a second holder in the same process is refused like one in another process.
final class FileLock: Sendable {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// Opens (creating it owner-only when missing) a lock file.
    private static func openLockFile(_ path: String, mode: mode_t) throws -> Int32 {
        if let fd = try? Posix.createFile(path, mode: mode, what: "cannot create lock file") {
            close(fd)
        }
        return try Posix.open(path, O_RDWR | O_NOFOLLOW, what: "cannot open lock file")
    }

    /// Takes the lock without waiting; nil when someone else holds it.
    static func tryLock(_ path: String, shared: Bool = false, mode: mode_t = 0o600) throws -> FileLock? {
        let fd = try openLockFile(path, mode: mode)
        if Posix.retrying({ flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) }) != 0 {
            close(fd)
            return nil
        }
        return FileLock(fd: fd)
    }

    /// Takes the lock, waiting for other holders.
    static func lock(_ path: String, shared: Bool, mode: mode_t = 0o600) throws -> FileLock {
        let fd = try openLockFile(path, mode: mode)
        if Posix.retrying({ flock(fd, shared ? LOCK_SH : LOCK_EX) }) != 0 {
            let error = Posix.error("cannot lock", path)
            close(fd)
            throw error
        }
        return FileLock(fd: fd)
    }
}
