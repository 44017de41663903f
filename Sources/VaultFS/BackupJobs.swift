import Foundation
import Synchronization
import VaultCore

/// Backups started by `mkdir` in the mount, each on a thread of its own until it ends or
/// the mount does.
final class BackupJobs: Sendable {
    private let running = Mutex<[String: BackupJob]>([:])

    /// Runs `job` in the background; `ended` gets its point once it has ended.
    func start(_ job: BackupJob, ended: @escaping @Sendable (Point) -> Void) {
        let id = job.point.id
        running.withLock { $0[id] = job }
        Thread.detachNewThread { [self] in
            let point = job.run()
            _ = running.withLock { $0.removeValue(forKey: id) }
            ended(point)
        }
    }

    /// Cancels every job and waits up to `timeout` for them to end: they end as failed,
    /// never half-shown.
    func stopAll(timeout: TimeInterval = 30) {
        for job in running.withLock({ Array($0.values) }) { job.cancel() }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, running.withLock({ !$0.isEmpty }) { Thread.sleep(forTimeInterval: 0.05) }
    }
}
