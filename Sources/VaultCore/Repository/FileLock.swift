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

/// A lock file in the local folder and, for a repository in an object store, a lease every
/// host sharing it honours (one backup of a server at a time; garbage collection alone).
/// Released when the value goes away.
final class StoreLock: Sendable {
    let file: FileLock
    let lease: ObjectLease?

    init(file: FileLock, lease: ObjectLease?) {
        self.file = file
        self.lease = lease
    }

    /// True when another host took the lease (ours expired unrenewed): the backup must stop.
    var isLost: Bool { lease?.isLost ?? false }

    /// Throws when the lease was lost, so a backup never commits without it (and a
    /// collection stops sweeping).
    func requireHeld(_ server: String) throws {
        if isLost {
            throw VaultError(
                .busy,
                "lost the lease on server '\(server)' to another host (the object store was unreachable for longer than the lease lasts); this backup is abandoned"
            )
        }
    }
}
