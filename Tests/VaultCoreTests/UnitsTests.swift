import Foundation
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
}
