import Foundation

extension Policy {
    var interval: TimeInterval { TimeInterval(everyHours) * 3600 }

    /// The launch time on the day the policy was set, in local time: every slot is this
    /// plus a whole number of intervals.
    var anchor: Date {
        let day = Calendar.current.startOfDay(for: since)
        return day.addingTimeInterval(TimeInterval(startMinute) * 60)
    }

    /// The latest slot at or before `now` that is not before the policy was set, if any.
    public func latestSlot(atOrBefore now: Date) -> Date? {
        let steps = (now.timeIntervalSince(anchor) / interval).rounded(.down)
        let slot = anchor.addingTimeInterval(steps * interval)
        return slot >= since.addingTimeInterval(-60) && slot <= now ? slot : nil
    }

    /// The first slot after `now`.
    public func nextSlot(after now: Date) -> Date {
        let steps = (now.timeIntervalSince(anchor) / interval).rounded(.down) + 1
        var slot = anchor.addingTimeInterval(steps * interval)
        while slot < since.addingTimeInterval(-60) { slot += interval }
        return slot
    }
}

/// Which type the next policy point of a server is (seed 000): a full when there is no
/// usable chain or the chain already has K incrementals, otherwise an incremental on the
/// chain's newest point.
public enum ChainRule {
    public static func next(policyPoints: [Point], incrementals: Int) -> (kind: PointKind, parent: String?) {
        let ordered = policyPoints.sorted { $0.startedAt < $1.startedAt }
        guard let lastFull = ordered.last(where: { $0.kind == .full && $0.deletion != .deleted }),
              lastFull.status == .active, lastFull.deletion == .none else { return (.full, nil) }
        let chain = ordered.filter { $0.chainId == lastFull.id && $0.status == .active && $0.deletion == .none }
        let count = chain.filter { $0.kind == .incremental }.count
        guard count < incrementals, let tip = chain.last else { return (.full, nil) }
        return (.incremental, tip.id)
    }
}
