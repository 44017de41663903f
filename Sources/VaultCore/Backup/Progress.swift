import Foundation
import Synchronization

/// How far a backup is: bytes read of the bytes to read, and seconds since it started.
public struct BackupProgress: Sendable {
    public var done: Int64
    public var total: Int64
    public var elapsed: Double

    /// Bytes per second so far.
    public var rate: Double { elapsed > 0 ? Double(done) / elapsed : 0 }

    /// Seconds left at the current rate, when known.
    public var remaining: Double? {
        guard rate > 0, total >= done else { return nil }
        return Double(total - done) / rate
    }
}

/// Counts bytes from the reading threads and reports at most every half second.
final class ProgressMeter: Sendable {
    private let done = Atomic<Int64>(0)
    private let total = Atomic<Int64>(0)
    private let lastReport = Mutex<Double>(0)
    private let start = Date()
    private let report: @Sendable (BackupProgress) -> Void

    init(report: @escaping @Sendable (BackupProgress) -> Void) { self.report = report }

    func addTotal(_ bytes: Int64) { total.add(bytes, ordering: .relaxed) }

    func advance(_ bytes: Int64) {
        done.add(bytes, ordering: .relaxed)
        let now = Date().timeIntervalSince(start)
        let due = lastReport.withLock { last in
            guard now - last >= 0.5 else { return false }
            last = now
            return true
        }
        if due { report(snapshot()) }
    }

    func snapshot() -> BackupProgress {
        BackupProgress(done: done.load(ordering: .relaxed), total: total.load(ordering: .relaxed),
                       elapsed: Date().timeIntervalSince(start))
    }

    func finish() { report(snapshot()) }
}
