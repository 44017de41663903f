import Foundation
import TestSupport
import XCTest

@testable import VaultCore

/// A page of points as the console asks for it comes from one SQL query: here each filter,
/// alone and together, against the same filter applied to every point in Swift.
final class PointPageTests: XCTestCase {
    func testEveryFilterAndPageMatchesTheSameFilterOverEveryPoint() throws {
        let fixture = try Fixture()
        let repository = fixture.repository
        func backup(_ name: String, kind: PointKind = .full, parent: String? = nil, tags: [(String, String)]) throws
            -> Point
        {
            var plan = BackupPlan.manual(server: fixture.server, name: name)
            plan.kind = kind
            plan.parentId = parent
            plan.tags = tags.map { (key: $0.0, value: $0.1) }
            if kind == .incremental { plan.schedule = .policy }
            return try repository.prepareBackup(plan).run()
        }
        let a = try backup("a", tags: [("env", "prod")])
        _ = try backup("b", kind: .incremental, parent: a.id, tags: [("env", "dev")])
        let c = try backup("c", tags: [])
        _ = try backup("d", tags: [("env", "prod"), ("team", "ops")])
        _ = try backup("e", kind: .incremental, parent: a.id, tags: [("team", "ops")])
        _ = try repository.softDelete(points: [c])

        let queries: [[String: String]] = [
            [:], ["type": "full"], ["type": "incremental"], ["schedule": "policy"], ["schedule": "manual"],
            ["status": "active"], ["status": "error"], ["tag": "env"], ["tag": "env=prod"], ["tag": "team=ops"],
            ["tag": "env=none"], ["deleted": "true"], ["deleted": "true", "type": "full"], ["vault": "prod"],
            ["server": "web", "tag": "env=prod", "type": "full"], ["limit": "2"], ["limit": "2", "offset": "2"],
            ["offset": "4"], ["offset": "100"], ["since": "2000-01-01"], ["before": "2000-01-01"],
            ["since": "1h", "limit": "3", "offset": "1"],
        ]
        let tags = try repository.catalog.tagsByPoint()
        for fields in queries {
            let query = try PointQuery(fields: fields)
            for history in [false, true] {
                let page = try repository.page(query, history: history)
                var query = query
                if history { query.includeDeleted = true }
                let all = try repository.catalog.allPoints().reversed().filter { point in
                    (history || point.deletion != .deleted) && (query.includeDeleted || point.deletion == .none)
                        && query.matches(point, tags: tags[point.id] ?? [])
                }
                let expected = all.dropFirst(query.offset).prefix(query.limit).map(\.id)
                XCTAssertEqual(page.points.map(\.id), Array(expected), "\(fields) history \(history)")
                XCTAssertEqual(page.total, all.count, "\(fields) history \(history)")
            }
        }
        // Newest first: the last backup leads the page.
        XCTAssertEqual(try repository.page(PointQuery()).points.first?.name, "e")

        // Each server's latest attempt, in one query, against the last of every point.
        try repository.addServer(named: "db", vault: "prod", disks: [("root", fixture.disk.path)], now: Date())
        var plan = BackupPlan.manual(server: "db", name: "only")
        plan.tags = []
        _ = try repository.prepareBackup(plan).run()
        let latest = try repository.catalog.latestPointByServer()
        let expected = Dictionary(
            try repository.catalog.allPoints().map { ($0.serverName, $0.id) }, uniquingKeysWith: { _, newer in newer })
        XCTAssertEqual(latest.mapValues(\.id), expected)
        XCTAssertEqual(latest["web"]?.name, "e")
        XCTAssertEqual(latest["db"]?.name, "only")
    }
}

extension PointQuery {
    /// The reference the catalog's paging is checked against: whether `point` (with its tags,
    /// when a tag is asked for) is one this query shows, in Swift.
    fileprivate func matches(_ point: Point, tags: [PointTag]?) -> Bool {
        guard filter.matches(point) else { return false }
        if let schedule, point.schedule != schedule { return false }
        if let status, point.status != status || point.deletion == .deleted { return false }
        if let tag {
            guard let tags, tags.contains(where: { $0.key == tag.key && (tag.value == nil || $0.value == tag.value) })
            else { return false }
        }
        return true
    }
}
