import Foundation

extension Policy {
    var interval: TimeInterval { TimeInterval(everyHours) * 3600 }

    /// The wall-clock hours of a day's slots, when the interval divides a day: the launch
    /// time and every `everyHours` after it, the same every day (so a change to or from
    /// daylight saving time moves no launch).
    private var dailyHours: [Int]? {
        guard 24 % everyHours == 0 else { return nil }
        return (0..<(24 / everyHours)).map { (startMinute / 60 + $0 * everyHours) % 24 }.sorted()
    }

    /// Slots on the local days around `date`, oldest first. A policy's values are in range
    /// (its initializer checks them), so nothing here can divide by zero.
    private func slots(around date: Date, calendar: Calendar) -> [Date] {
        let today = calendar.startOfDay(for: date)
        if let hours = dailyHours {
            return (-1...1).flatMap { offset -> [Date] in
                guard let day = calendar.date(byAdding: .day, value: offset, to: today) else { return [] }
                return hours.compactMap {
                    calendar.date(bySettingHour: $0, minute: startMinute % 60, second: 0, of: day)
                }
            }.sorted()
        }
        // An interval that does not divide a day steps from the first launch.
        let anchor =
            calendar.date(
                bySettingHour: startMinute / 60, minute: startMinute % 60, second: 0,
                of: calendar.startOfDay(for: since)) ?? since
        let steps = (date.timeIntervalSince(anchor) / interval).rounded(.down)
        return (-1...1).map { anchor.addingTimeInterval((steps + Double($0)) * interval) }
    }

    private func eligible(_ slot: Date) -> Bool { slot >= since.addingTimeInterval(-60) }

    /// The latest slot at or before `now` that is not before the policy was set, if any.
    public func latestSlot(atOrBefore now: Date, calendar: Calendar = .current) -> Date? {
        slots(around: now, calendar: calendar).last { $0 <= now && eligible($0) }
    }

    /// The first slot after `now`; `distantFuture` when there is none within a year past the
    /// longest interval.
    public func nextSlot(after now: Date, calendar: Calendar = .current) -> Date {
        var probe = now
        for _ in 0..<(Self.everyHoursRange.upperBound / 24 + 366) {
            if let slot = slots(around: probe, calendar: calendar).first(where: { $0 > now && eligible($0) }) {
                return slot
            }
            probe = probe.addingTimeInterval(86400)
        }
        return .distantFuture
    }
}

/// Which type the next policy point of a server is (seed 000): a full when there is no
/// usable chain or the chain already has K incrementals, otherwise an incremental on the
/// chain's newest point.
public enum ChainRule {
    public static func next(policyPoints: [Point], incrementals: Int) -> (kind: PointKind, parent: String?) {
        let ordered = policyPoints.sorted { $0.startedAt < $1.startedAt }
        guard let lastFull = ordered.last(where: { $0.kind == .full && $0.deletion != .deleted }),
            lastFull.status == .active, lastFull.deletion == .none
        else { return (.full, nil) }
        let chain = ordered.filter { $0.chainId == lastFull.id && $0.status == .active && $0.deletion == .none }
        let count = chain.filter { $0.kind == .incremental }.count
        guard count < incrementals, let tip = chain.last else { return (.full, nil) }
        return (.incremental, tip.id)
    }
}
