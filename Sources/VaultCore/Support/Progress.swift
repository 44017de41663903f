import Foundation
import Synchronization

/// How far a long job is (a backup, an export, a verification, a copy of files): what it
/// works on now, how much of the total is done (0 total: not known), and seconds since it
/// started.
public struct BackupProgress: Sendable, Codable {
    public enum Unit: String, Sendable, Codable { case bytes, chunks }

    public var label: String
    public var unit: Unit
    public var done: Int64
    public var total: Int64
    public var elapsed: Double

    /// Bytes per second so far.
    public var rate: Double { elapsed > 0 ? Double(done) / elapsed : 0 }

    /// Seconds left at the current rate, when known.
    public var remaining: Double? {
        guard rate > 0, total > 0, total >= done else { return nil }
        return Double(total - done) / rate
    }
}

/// Counts work from any thread and reports at most every half second, and once at the end.
public final class ProgressMeter: Sendable {
    private let done = Atomic<Int64>(0)
    private let total = Atomic<Int64>(0)
    private let lastReport = Mutex<Double>(0)
    private let label: Mutex<String>
    private let unit: BackupProgress.Unit
    private let start = Date()
    private let report: @Sendable (BackupProgress) -> Void

    public init(
        label: String = "", unit: BackupProgress.Unit = .bytes, report: @escaping @Sendable (BackupProgress) -> Void
    ) {
        self.label = Mutex(label)
        self.unit = unit
        self.report = report
    }

    /// Names what is worked on from now (a server's disk).
    public func setLabel(_ text: String) { label.withLock { $0 = text } }

    public func addTotal(_ bytes: Int64) { total.add(bytes, ordering: .relaxed) }

    public func advance(_ bytes: Int64) {
        done.add(bytes, ordering: .relaxed)
        let now = Date().timeIntervalSince(start)
        let due = lastReport.withLock { last in
            guard now - last >= 0.5 else { return false }
            last = now
            return true
        }
        if due { report(snapshot()) }
    }

    public func snapshot() -> BackupProgress {
        BackupProgress(
            label: label.withLock { $0 }, unit: unit, done: done.load(ordering: .relaxed),
            total: total.load(ordering: .relaxed), elapsed: Date().timeIntervalSince(start))
    }

    public func finish() { report(snapshot()) }
}
