import TestSupport
import XCTest

@testable import VaultCore

final class PolicyTests: XCTestCase {
    let since = Units.parseTime("2030-01-01T15:00")!
    var policy: Policy {
        get throws { try Policy(startMinute: 16 * 60, everyHours: 4, incrementals: 4, keepFulls: 2, since: since) }
    }

    func testSlotsStartAtLaunchTimeAndRepeatEveryInterval() throws {
        let policy = try self.policy
        XCTAssertNil(policy.latestSlot(atOrBefore: Units.parseTime("2030-01-01T15:59")!))
        XCTAssertEqual(
            policy.latestSlot(atOrBefore: Units.parseTime("2030-01-01T16:00")!), Units.parseTime("2030-01-01T16:00"))
        XCTAssertEqual(
            policy.latestSlot(atOrBefore: Units.parseTime("2030-01-02T01:30")!), Units.parseTime("2030-01-02T00:00"))
        XCTAssertEqual(
            policy.nextSlot(after: Units.parseTime("2030-01-02T01:30")!), Units.parseTime("2030-01-02T04:00"))
    }

    func testLaunchTimeStaysOnTheWallClockAcrossDaylightSavingTime() throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Europe/Berlin")!
        let formatter = DateFormatter()
        formatter.calendar = calendar
        formatter.timeZone = calendar.timeZone
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        let daily = try Policy(
            startMinute: 16 * 60, everyHours: 24, incrementals: 6, keepFulls: 2,
            since: formatter.date(from: "2030-03-20 12:00")!)
        // Summer time starts on 2030-03-31 in Berlin; the launch stays at 16:00 local.
        for day in ["2030-03-30", "2030-03-31", "2030-04-01"] {
            XCTAssertEqual(
                daily.latestSlot(atOrBefore: formatter.date(from: "\(day) 18:00")!, calendar: calendar),
                formatter.date(from: "\(day) 16:00"), day)
        }
        XCTAssertEqual(
            daily.nextSlot(after: formatter.date(from: "2030-03-30 17:00")!, calendar: calendar),
            formatter.date(from: "2030-03-31 16:00"))
    }

    func testIntervalThatDoesNotDivideADayStepsFromTheFirstLaunch() throws {
        let odd = try Policy(startMinute: 16 * 60, everyHours: 5, incrementals: 4, keepFulls: 2, since: since)
        XCTAssertEqual(
            odd.latestSlot(atOrBefore: Units.parseTime("2030-01-02T03:00")!), Units.parseTime("2030-01-02T02:00"))
        XCTAssertEqual(odd.nextSlot(after: Units.parseTime("2030-01-02T03:00")!), Units.parseTime("2030-01-02T07:00"))
    }

    func testMissedSlotsCollapseIntoTheLatestOne() throws {
        let policy = try self.policy
        XCTAssertEqual(
            policy.latestSlot(atOrBefore: Units.parseTime("2030-01-05T13:10")!), Units.parseTime("2030-01-05T12:00"))
    }

    private func point(
        _ id: String, _ kind: PointKind, chain: String, status: PointStatus = .active,
        deletion: Deletion = .none, at hour: Double
    ) -> Point {
        Point(
            id: id, serverId: 1, serverName: "s", vaultId: 1, vaultName: "v", name: id, description: "", kind: kind,
            schedule: .policy, status: status, error: nil, parentId: nil, chainId: chain, slot: nil,
            startedAt: since.addingTimeInterval(hour * 3600), finishedAt: nil, deletion: deletion, deletedAt: nil,
            progressDone: 0, progressTotal: 0)
    }

    func testChainRuleTakesKIncrementalsThenAFull() {
        XCTAssertEqual(ChainRule.next(policyPoints: [], incrementals: 4).kind, .full)
        var points = [point("f1", .full, chain: "f1", at: 1)]
        for i in 1...4 {
            let next = ChainRule.next(policyPoints: points, incrementals: 4)
            XCTAssertEqual(next.kind, .incremental)
            XCTAssertEqual(next.parent, points.last!.id)
            points.append(point("i\(i)", .incremental, chain: "f1", at: Double(1 + i)))
        }
        XCTAssertEqual(ChainRule.next(policyPoints: points, incrementals: 4).kind, .full)
    }

    func testChainWhoseFullFailedOrWasDeletedStartsWithAFull() {
        let good = point("f1", .full, chain: "f1", at: 1)
        XCTAssertEqual(
            ChainRule.next(
                policyPoints: [good, point("f2", .full, chain: "f2", status: .failed, at: 2)], incrementals: 4
            ).kind, .full)
        XCTAssertEqual(
            ChainRule.next(policyPoints: [point("f1", .full, chain: "f1", deletion: .soft, at: 1)], incrementals: 4)
                .kind, .full)
    }

    func testFailedIncrementalIsSkippedAsParent() {
        let points = [
            point("f1", .full, chain: "f1", at: 1), point("i1", .incremental, chain: "f1", at: 2),
            point("i2", .incremental, chain: "f1", status: .failed, at: 3),
        ]
        let next = ChainRule.next(policyPoints: points, incrementals: 4)
        XCTAssertEqual(next.kind, .incremental)
        XCTAssertEqual(next.parent, "i1")
    }

    /// A policy out of range, as a damaged or hostile manifest could hold, cannot be made:
    /// the command line, the catalog and the manifest reader all go through one initializer,
    /// so no value that could trap or loop reaches the scheduler.
    func testAnImpossiblePolicyCannotBeMade() {
        let cases = [
            (0, 0, 0, 1, "every 0h"), (0, -4, 0, 1, "every -4h"), (0, 8761, 0, 1, "every 8761h"),
            (-60, 4, 0, 1, "start minute -60"), (1440, 4, 0, 1, "start minute 1440"),
            (0, 4, -1, 1, "-1 incrementals"), (0, 4, 0, 0, "keeping 0 fulls"), (0, 4, 0, -1, "keeping -1 fulls"),
        ]
        for (start, every, incrementals, keep, why) in cases {
            XCTAssertThrowsError(
                try Policy(
                    startMinute: start, everyHours: every, incrementals: incrementals,
                    keepFulls: keep, since: since)
            ) {
                XCTAssertTrue("\($0)".contains(why), "\($0)")
            }
        }
        XCTAssertThrowsError(
            try Policy(
                startMinute: 0, everyHours: 4, incrementals: 0, keepFulls: 1, since: Date(timeIntervalSince1970: .nan)))
    }

    func testAVaultManifestWithAnImpossiblePolicyIsRefusedByNameWhenRebuilding() throws {
        let fixture = try Fixture()
        try fixture.repository.setPolicy(policy, vault: "prod")
        let path = "\(fixture.repository.root)/manifests/vaults/prod.json"
        for (key, value) in [
            ("policyEveryHours", 0), ("policyEveryHours", -3), ("policyKeepFulls", -1), ("policyStartMinute", 5000),
        ] {
            var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(readBytes(path))) as? [String: Any])
            var vault = try XCTUnwrap(object["vault"] as? [String: Any])
            let kept = object
            vault[key] = value
            object["vault"] = vault
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(
                try CatalogRebuild.build(
                    at: fixture.scratch.file("rebuilt.sqlite"), from: fixture.repository.manifests,
                    modes: .ownerOnly), key
            ) {
                XCTAssertTrue("\($0)".contains(path) && "\($0)".contains("policy"), "\($0)")
            }
            XCTAssertTrue(try fixture.repository.manifests.changed(since: [:]).vaults.isEmpty, key)
            try JSONSerialization.data(withJSONObject: kept).write(to: URL(fileURLWithPath: path))
        }
    }
}
