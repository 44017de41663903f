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

    func testShownTimesCarryTheirZonesOffset() {
        let date = Date(timeIntervalSince1970: 1_893_456_000) // 2030-01-01 00:00:00 UTC
        XCTAssertEqual(Units.formatShown(date, offset: 0), "2030-01-01 00:00:00 +0000")
        XCTAssertEqual(Units.formatShown(date, offset: 3600), "2030-01-01 01:00:00 +0100")
        XCTAssertEqual(Units.formatShown(date, offset: -(3 * 3600 + 1800)), "2029-12-31 20:30:00 -0330")
        XCTAssertEqual(Units.formatShown(date, offset: 5 * 3600 + 2700), "2030-01-01 05:45:00 +0545")
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
