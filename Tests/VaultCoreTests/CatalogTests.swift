import Foundation
import TestSupport
import XCTest

@testable import VaultCore

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

    /// Points are read column by column: every field comes back as written, each with a
    /// value no other field has, so two columns read into each other's field would show.
    func testPointsReadBackAsWritten() throws {
        let fixture = try Fixture()
        let first = try fixture.backup("one")
        try fixture.repository.createVault(named: "other", policy: nil, now: Date())
        let other = try fixture.repository.catalog.vault(named: "other")
        XCTAssertNotEqual(other.id, first.serverId)
        let second = Date(timeIntervalSince1970: 1_900_000_000)
        let point = Point(
            id: "4f3c", serverId: first.serverId, serverName: "web", vaultId: other.id, vaultName: "other",
            name: "two", description: "by hand", kind: .incremental, schedule: .policy, status: .failed,
            error: "the disk went away", parentId: first.id, chainId: "chain-of-two",
            slot: second.addingTimeInterval(-60),
            startedAt: second, finishedAt: second.addingTimeInterval(5), deletion: .soft,
            deletedAt: second.addingTimeInterval(9), progressDone: 3, progressTotal: 7)
        try fixture.repository.catalog.insertPoint(point, tags: [("ticket", "42")])
        XCTAssertEqual(try fixture.repository.catalog.point(id: "4f3c"), point)
        XCTAssertNil(try fixture.repository.catalog.point(id: first.id)?.parentId)
        XCTAssertEqual(
            try fixture.repository.catalog.tagsByPoint()["4f3c"],
            [PointTag(pointId: "4f3c", key: "ticket", value: "42")])
        let disks = try fixture.repository.catalog.pointDisks(first.id)
        XCTAssertEqual(disks.map(\.disk), ["root"])
        XCTAssertEqual(try fixture.repository.catalog.pointDisksByPoint()[first.id], disks)
        XCTAssertEqual(try fixture.repository.catalog.pointDisksByPoint(ids: [first.id]), [first.id: disks])
    }

    /// A value no version wrote, or one its column cannot hold, is refused with the repair
    /// command rather than guessed or crashed on.
    func testUnreadablePointValuesAreRefusedWithTheRepairCommand() throws {
        let fixture = try Fixture()
        let point = try fixture.backup("one")
        for (change, expected) in [
            ("status = 'lost'", "status is 'lost'"), ("startedAt = 'last week'", "startedAt column"),
        ] {
            try fixture.repository.catalog.write {
                try $0.execute(sql: "UPDATE point SET \(change) WHERE id = ?", arguments: [point.id])
            }
            XCTAssertThrowsError(try fixture.repository.catalog.point(id: point.id), change) { error in
                XCTAssertEqual((error as? VaultError)?.code, .needsRepair, "\(error)")
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
                XCTAssertTrue("\(error)".contains("repair --rebuild-catalog"), "\(error)")
            }
            try fixture.repository.catalog.write {
                try $0.execute(
                    sql: "UPDATE point SET status = 'active', startedAt = ? WHERE id = ?",
                    arguments: [point.startedAt, point.id])
            }
        }
    }
}
