import Foundation
import TestSupport
@testable import VaultCore
import XCTest

final class CatalogTests: XCTestCase {
    /// The mount reads its tree again only when this number moves, so it must move with every
    /// commit, whoever makes it, and stay put for reads.
    func testChangeCountMovesWithEveryCommitAndOnlyThen() throws {
        let fixture = try Fixture()
        let catalog = fixture.repository.catalog
        let first = try catalog.changeCount()
        _ = try catalog.inventory()
        XCTAssertEqual(try catalog.changeCount(), first, "a read moved the number")

        try fixture.backup("one")
        let second = try catalog.changeCount()
        XCTAssertNotEqual(second, first, "this process's own commit did not move the number")

        // Another process's commit: a second repository opened on the same folder writes.
        let other = try Repository(path: fixture.scratch.file("repo"))
        try other.createVault(named: "other", policy: nil, now: Date())
        XCTAssertNotEqual(try catalog.changeCount(), second, "another connection's commit did not move the number")
    }

    /// Points are read column by column: every field, set or not, comes back as written, and
    /// a value no version wrote is refused with the repair command rather than guessed.
    func testPointsReadBackAsWrittenAndOddValuesAreRefused() throws {
        let fixture = try Fixture()
        let first = try fixture.backup("one")
        let second = Date(timeIntervalSince1970: 1_900_000_000)
        let point = Point(id: "4f3c", serverId: first.serverId, serverName: "web", vaultId: first.vaultId, vaultName: "prod",
                          name: "two", description: "by hand", kind: .incremental, schedule: .policy, status: .failed,
                          error: "the disk went away", parentId: first.id, chainId: first.chainId, slot: second,
                          startedAt: second, finishedAt: second.addingTimeInterval(5), deletion: .soft,
                          deletedAt: second.addingTimeInterval(9), progressDone: 3, progressTotal: 7)
        try fixture.repository.catalog.insertPoint(point, tags: [("ticket", "42")])
        XCTAssertEqual(try fixture.repository.catalog.point(id: "4f3c"), point)
        XCTAssertEqual(try fixture.repository.catalog.point(id: first.id)?.parentId, nil)
        XCTAssertEqual(try fixture.repository.catalog.tagsByPoint()["4f3c"], [PointTag(pointId: "4f3c", key: "ticket", value: "42")])
        let disks = try fixture.repository.catalog.pointDisks(first.id)
        XCTAssertEqual(disks.map(\.disk), ["root"])
        XCTAssertEqual(try fixture.repository.catalog.pointDisksByPoint()[first.id], disks)

        try fixture.repository.catalog.write { try $0.execute(sql: "UPDATE point SET status = 'lost' WHERE id = '4f3c'") }
        XCTAssertThrowsError(try fixture.repository.catalog.point(id: "4f3c")) { error in
            XCTAssertEqual((error as? VaultError)?.code, .needsRepair)
            XCTAssertTrue("\(error)".contains("status is 'lost'"), "\(error)")
        }
    }
}
