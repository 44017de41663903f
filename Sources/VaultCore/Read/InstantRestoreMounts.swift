import Foundation
import Glibc
import Synchronization

/// Where a running mount serves an instant restore's image.
public enum InstantRestoreMounts {
    /// The image's path in `mount`, or in a vaultfs mount of `repository` that serves it
    /// within a few seconds; nil when none does.
    public static func image(of record: InstantRestoreRecord, repository: Repository, mount: String?) -> String? {
        let candidates: [String]
        if let mount {
            candidates = [Posix.realPath(mount) ?? mount]
        } else {
            let mounts = MountTable.current().filter { $0.type == "fuse.vaultfs" }
            // Those showing this repository (by their source) first.
            candidates =
                mounts.filter { $0.source == repository.location.name }.map(\.target)
                + mounts.filter { $0.source != repository.location.name }.map(\.target)
        }
        let deadline = Date().addingTimeInterval(5)
        repeat {
            for folder in candidates {
                let path = "\(folder)/.restores/\(record.id)/\(record.disk).img"
                if reachable(path) { return path }
            }
            usleep(100_000)
        } while Date() < deadline && !candidates.isEmpty
        return nil
    }

    /// Whether `path` exists, asked on another thread and waited for at most a second, so a
    /// hung mount cannot hang the command.
    private static func reachable(_ path: String) -> Bool {
        let found = Mutex(false)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var st = stat()
            let exists = stat(path, &st) == 0
            found.withLock { $0 = exists }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 1)
        return found.withLock { $0 }
    }
}
