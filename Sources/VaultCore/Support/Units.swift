import Foundation
import Glibc

/// Parsing and printing of sizes, durations and times as users type and read them.
public enum Units {
    /// Parses `1M`, `64K`, `4MiB`, `1048576` into bytes.
    public static func parseSize(_ text: String) -> Int? {
        let lower = text.lowercased().replacingOccurrences(of: "ib", with: "").replacingOccurrences(of: "b", with: "")
        guard let last = lower.last else { return nil }
        let multipliers: [Character: Int] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40]
        if let multiplier = multipliers[last] {
            guard let value = Int(lower.dropLast()), value >= 0 else { return nil }
            let (bytes, overflow) = value.multipliedReportingOverflow(by: multiplier)
            return overflow ? nil : bytes
        }
        guard let value = Int(lower), value >= 0 else { return nil }
        return value
    }

    /// Prints a byte count for people: `1.5 GiB`, `512 KiB`, `0 B`.
    public static func formatSize(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var unit = 0
        while unit < units.count - 1 && bytes >> (10 * unit) >= 1024 { unit += 1 }
        guard unit > 0 else { return "\(bytes) B" }
        // In tenths, rounded half to even as printf's "%.1f" rounds: bytes / 1024^unit is
        // exact in binary, so a tie is a true tie. Worked in integers, 10x10x without overflow.
        let shift = Int64(10 * unit)
        let whole = bytes >> shift
        let part = (bytes & ((1 << shift) - 1)) * 10
        var tenths = whole * 10 + part >> shift
        let rest = part & ((1 << shift) - 1)
        let half = Int64(1) << (shift - 1)
        if rest > half || (rest == half && tenths % 2 == 1) { tenths += 1 }
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }

    /// A duration given on a command line; `.invalidArgument` when it is not one.
    public static func durationArgument(_ text: String) throws -> TimeInterval {
        guard let value = parseDuration(text) else {
            throw VaultError(.invalidArgument, "bad duration '\(text)': use e.g. 7d, 12h, 30m, 45s or 0")
        }
        return value
    }

    /// A duration in the largest unit that shows it whole: `1d`, `36h`, `90s`.
    public static func formatDuration(_ seconds: TimeInterval) -> String {
        let whole = Int(seconds.rounded())
        for (unit, size) in [("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)]
        where whole >= size && whole % size == 0 {
            return "\(whole / size)\(unit)"
        }
        return "\(whole)s"
    }

    /// Parses `7d`, `12h`, `30m`, `45s`, `1.5h` or plain seconds: digits with an optional
    /// fraction (no sign, exponent, hex, `inf` or `nan`), at most 12 digits, under 10^15 s.
    /// A count given as text (a page's `offset` or `limit`): digits only, within `range`;
    /// `.invalidArgument` naming the field otherwise.
    public static func wholeNumber(_ text: String, name: String, in range: ClosedRange<Int>) throws -> Int {
        guard (1...10).contains(text.utf8.count), text.utf8.allSatisfy({ (48...57).contains($0) }),
            let value = Int(text), range.contains(value)
        else {
            throw VaultError.invalid(
                "bad \(name) '\(text.prefix(20))': use a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    public static func parseDuration(_ text: String) -> TimeInterval? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800]
        guard let last = text.last else { return nil }
        let unit = units[last]
        let number = unit == nil ? Substring(text) : text.dropLast()
        let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard !number.isEmpty, number.count <= 13, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }),
            let value = Double(number)
        else { return nil }
        let seconds = value * (unit ?? 1)
        return seconds < 1e15 ? seconds : nil
    }

    /// A time given (`parseTime`), or a duration before `now` (`7d`, `12h`); refused with a
    /// line naming it otherwise.
    public static func parseMoment(_ text: String, now: Date = Date()) throws -> Date {
        if let date = parseTime(text) { return date }
        if let age = parseDuration(text), !text.allSatisfy(\.isNumber) { return now - age }
        throw VaultError(.invalidArgument, "bad time '\(text)': use YYYY-MM-DD[THH:MM][Z] or a duration such as 7d")
    }

    /// Parses `2026-11-25T16:00`, `2026-11-25 16:00:30`, with an optional `Z` for UTC;
    /// without it the time is local.
    public static func parseTime(_ text: String) -> Date? {
        let formats = [
            "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd",
        ]
        var body = text
        var zone = TimeZone.current
        if body.hasSuffix("Z") {
            body.removeLast()
            zone = TimeZone(identifier: "UTC")!
        }
        for format in formats {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = zone
            formatter.dateFormat = format
            if let date = formatter.date(from: body) { return date }
        }
        return nil
    }

    /// `2026-11-25T16:00:00Z`, the form JSON and tables use. Formatted by hand from the UTC
    /// calendar fields: a formatter per call cost a listing of 10,000 points seconds in ICU.
    public static func formatTime(_ date: Date) -> String {
        let t = utcFields(date)
        return
            "\(pad(t.year, 4))-\(pad(t.month, 2))-\(pad(t.day, 2))T\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2))Z"
    }

    /// `20261125T160000Z`: a policy point's directory name, sortable and free of colons.
    public static func compactUTC(_ date: Date) -> String {
        let t = utcFields(date)
        return
            "\(pad(t.year, 4))\(pad(t.month, 2))\(pad(t.day, 2))T\(pad(t.hour, 2))\(pad(t.minute, 2))\(pad(t.second, 2))Z"
    }

    /// `date` as tables show it, in the zone `offset` seconds east of UTC:
    /// `2030-01-01 17:00:00 +0100`.
    public static func formatShown(_ date: Date, offset: Int) -> String {
        let t = utcFields(date.addingTimeInterval(Double(offset)))
        let minutes = abs(offset) / 60
        return
            "\(pad(t.year, 4))-\(pad(t.month, 2))-\(pad(t.day, 2)) \(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2)) \(offset < 0 ? "-" : "+")\(pad(minutes / 60, 2))\(pad(minutes % 60, 2))"
    }

    private static func utcFields(_ date: Date) -> (
        year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int
    ) {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var fields = tm()
        gmtime_r(&seconds, &fields)
        return (
            Int(fields.tm_year) + 1900, Int(fields.tm_mon) + 1, Int(fields.tm_mday), Int(fields.tm_hour),
            Int(fields.tm_min), Int(fields.tm_sec)
        )
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}

extension Character {
    /// 0 to 9 only (`isNumber` takes other scripts' digits and fractions too).
    public var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
