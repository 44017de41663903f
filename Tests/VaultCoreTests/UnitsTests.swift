import Foundation
import TestSupport
import XCTest

@testable import VaultCore

/// Times as tables, JSON and policy point names spell them, against Foundation's formatters.
final class UnitsTests: XCTestCase {
    func testTimesAreISO8601InUTCAndCompactNamesSortAsTime() {
        let reference = ISO8601DateFormatter()
        reference.formatOptions = [.withInternetDateTime]
        for seconds in [0.0, 1_764_000_000.9, 1_893_456_000, -1, 951_782_400, 4_102_444_799] {
            let date = Date(timeIntervalSince1970: seconds)
            XCTAssertEqual(Units.formatTime(date), reference.string(from: date), "\(seconds)")
        }
        XCTAssertEqual(Units.compactUTC(Date(timeIntervalSince1970: 1_893_513_600)), "20300101T160000Z")
        XCTAssertEqual(Units.compactUTC(Date(timeIntervalSince1970: 951_782_400)), "20000229T000000Z")
    }

    /// Sizes in tenths of their unit, as printf's "%.1f" spelled them: ties (exact in binary)
    /// round to even.
    func testSizesAreRoundedAsPrintfRoundsThem() {
        var values: [Int64] = [0, 1, 1023, 1024, 1075, 1076, 1126, 1127, 1_048_575, Int64.max, Int64.max >> 3]
        for unit in 1...4 {
            let base = Int64(1) << (10 * unit)
            for twentieths in [1, 3, 5, 21, 23, 25, 20 * 1023 + 19, 20 * 1024 + 1] {
                let tie = base * Int64(twentieths) / 20
                values += [tie - 1, tie, tie + 1]
            }
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20000 { values.append(Int64.random(in: 0...(1 << 52), using: &generator)) }
        for bytes in values {
            let units = ["B", "KiB", "MiB", "GiB", "TiB"]
            var value = Double(bytes)
            var unit = 0
            while value >= 1024 && unit < units.count - 1 {
                value /= 1024
                unit += 1
            }
            let printf = unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
            if bytes < 1 << 53 { XCTAssertEqual(Units.formatSize(bytes), printf, "\(bytes)") }
        }
        XCTAssertEqual(Units.formatSize(Int64.max), "8388608.0 TiB")
        XCTAssertEqual(Units.formatSize(-5), "-5 B")
    }

    func testShownTimesCarryTheirZonesOffset() {
        let date = Date(timeIntervalSince1970: 1_893_456_000) // 2030-01-01 00:00:00 UTC
        XCTAssertEqual(Units.formatShown(date, offset: 0), "2030-01-01 00:00:00 +0000")
        XCTAssertEqual(Units.formatShown(date, offset: 3600), "2030-01-01 01:00:00 +0100")
        XCTAssertEqual(Units.formatShown(date, offset: -(3 * 3600 + 1800)), "2029-12-31 20:30:00 -0330")
        XCTAssertEqual(Units.formatShown(date, offset: 5 * 3600 + 2700), "2030-01-01 05:45:00 +0545")
    }
}

/// Durations and the filters of a point listing, as a command or the console's query gives
/// them: every odd spelling refused with one line naming it.
final class InputTextTests: XCTestCase {
    func testDurationsAreDigitsWithAnOptionalFractionAndAUnit() {
        for (text, seconds) in [
            ("0", 0.0), ("45s", 45), ("30m", 1800), ("1.5h", 5400), ("7d", 604_800), ("2w", 1_209_600),
        ] {
            XCTAssertEqual(Units.parseDuration(text), seconds, text)
        }
        // As long as the API's document lets a client write (9 digits of weeks).
        XCTAssertEqual(Units.parseDuration("999999999.999w"), 999_999_999.999 * 604_800)
        for text in [
            "", "h", "-1d", "-0", "inf", "infd", "nan", "1e3d", "0x10h", "1e400", ".5h", "5.h", "1,5h", "٣d",
            "99999999999999d", "1 d",
        ] {
            XCTAssertNil(Units.parseDuration(text), text)
        }
        let now = Date(timeIntervalSince1970: 1_900_000_000)
        XCTAssertEqual(try Units.parseMoment("2d", now: now), now - 172_800)
        XCTAssertThrowsError(try Units.parseMoment("5", now: now), "a bare number is neither a time nor an age")
    }

    func testAPointQueryTakesKnownFiltersOnceAndRefusesTheRest() throws {
        let now = Date(timeIntervalSince1970: 1_900_000_000)
        let query = try PointQuery(
            fields: [
                "server": "web", "vault": "prod", "type": "Full", "schedule": "manual", "status": "error",
                "tag": "env=prod", "since": "7d", "deleted": "true", "offset": "100", "limit": "50", "before": "",
            ], now: now)
        XCTAssertEqual(query.server, "web")
        XCTAssertEqual(query.filter.vault, "prod")
        XCTAssertEqual(query.filter.kind, .full)
        XCTAssertEqual(query.schedule, .manual)
        XCTAssertEqual(query.status, .failed)
        XCTAssertEqual(query.tag, PointQuery.Tag(key: "env", value: "prod"))
        XCTAssertEqual(query.filter.since, now - 604_800)
        XCTAssertNil(query.filter.before, "an empty value is no filter")
        XCTAssertTrue(query.includeDeleted)
        XCTAssertEqual(query.offset, 100)
        XCTAssertEqual(query.limit, 50)
        XCTAssertEqual(try PointQuery(fields: ["tag": "env"]).tag, PointQuery.Tag(key: "env", value: nil))
        XCTAssertEqual(try PointQuery(fields: [:]).limit, PointQuery.defaultLimit)
        for (name, value) in [
            ("type", "weekly"), ("schedule", "cron"), ("status", "lost"), ("tag", "=x"), ("since", "yesterday"),
            ("before", "1e3d"), ("deleted", "yes"), ("offset", "-1"), ("offset", "1.5"), ("offset", "+5"),
            ("offset", "\u{0661}"), ("limit", "0"),
            ("limit", "1001"), ("limit", "99999999999"), ("server", "../web"), ("vault", "a/b"), ("colour", "red"),
        ] {
            XCTAssertThrowsError(try PointQuery(fields: [name: value]), "\(name)=\(value)") { error in
                let message = (error as? VaultError)?.message ?? ""
                XCTAssertEqual((error as? VaultError)?.code, .invalidArgument, "\(name)=\(value)")
                XCTAssertFalse(message.isEmpty || message.contains("\n"), message)
            }
        }
    }
}

final class MemoryLimitTests: XCTestCase {
    /// A control group's limit below the machine's memory is what the process may use;
    /// "max" and v1's near-Int64.max value mean none.
    func testAControlGroupLimitIsReadFromV1AndV2() throws {
        let scratch = Scratch("cgroup")
        let root = scratch.file("sys")
        for (folder, file, value) in [
            ("v2/a", "memory.max", "1073741824\n"), ("v2/b", "memory.max", "max\n"),
            ("memory/v1/a", "memory.limit_in_bytes", "536870912\n"),
            ("memory/v1/b", "memory.limit_in_bytes", "9223372036854771712\n"),
        ] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(folder)", withIntermediateDirectories: true)
            try Data(value.utf8).write(to: URL(fileURLWithPath: "\(root)/\(folder)/\(file)"))
        }
        func limit(_ cgroup: String) throws -> Int? {
            let file = scratch.file("cgroup-\(abs(cgroup.hashValue))")
            try Data(cgroup.utf8).write(to: URL(fileURLWithPath: file))
            return Posix.controlGroupMemoryLimit(cgroups: file, root: root)
        }
        XCTAssertEqual(try limit("0::/v2/a\n"), 1 << 30)
        XCTAssertNil(try limit("0::/v2/b\n"))
        XCTAssertEqual(try limit("4:memory:/v1/a\n1:cpu:/\n"), 512 << 20)
        XCTAssertNil(try limit("4:memory:/v1/b\n"))
        XCTAssertNil(try limit("4:memory:/../etc\n"), "a path that leaves the root is not followed")
        XCTAssertNil(try limit("garbage"))
        XCTAssertGreaterThan(Posix.physicalMemory, 0)
    }
}
