import Foundation
import Glibc
import Synchronization

/// Crash tests: with `VAULTFS_FAULT=STAGE[:N]` in the environment, the process kills itself
/// with SIGKILL the Nth time (default the first) it reaches STAGE, so tests can stop a
/// backup, a deletion or a collection at an exact moment. Without the variable this does
/// nothing but one comparison.
enum FaultInjection {
    private static let plan: (stage: String, count: Int)? = {
        guard let text = ProcessInfo.processInfo.environment["VAULTFS_FAULT"], !text.isEmpty else { return nil }
        let parts = text.split(separator: ":", maxSplits: 1)
        return (String(parts[0]), parts.count > 1 ? Int(parts[1]) ?? 1 : 1)
    }()
    private static let hits = Atomic<Int>(0)

    static func reached(_ stage: String) {
        guard let plan, plan.stage == stage else { return }
        if hits.add(1, ordering: .relaxed).newValue >= plan.count { kill(getpid(), SIGKILL) }
    }
}
