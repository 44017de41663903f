import Foundation
import Synchronization

/// Backups started now by a long-running process (`mkdir` in the mount, "Backup now" in the
/// console), each on a thread of its own until it ends or the process stops.
public final class BackupJobs: Sendable {
    private let running = Mutex<[String: BackupJob]>([:])

    public init() {}

    /// The ids of the points being made here.
    public var points: [String] { running.withLock { Array($0.keys) } }

    /// Runs `job` in the background; `ended` gets its point once it has ended.
    public func start(_ job: BackupJob, ended: @escaping @Sendable (Point) -> Void = { _ in }) {
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
    public func stopAll(timeout: TimeInterval = 30) {
        for job in running.withLock({ Array($0.values) }) { job.cancel() }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline, running.withLock({ !$0.isEmpty }) { Thread.sleep(forTimeInterval: 0.05) }
    }
}
