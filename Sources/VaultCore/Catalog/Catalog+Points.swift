import Foundation
internal import GRDB

/// Points: registering, finishing, finding and listing them.
extension Catalog {
    /// Registers a point as `creating`. A name already used by a live or soft-deleted point of
    /// the same server is refused; a failed attempt does not hold its name.
    func insertPoint(_ point: Point, tags: [(key: String, value: String)]) throws {
        try write { db in
            let clash = try PointRow.filter(
                Column("serverId") == point.serverId && Column("name") == point.name
                    && Column("deletion") != Deletion.deleted.rawValue
                    && Column("status") != PointStatus.failed.rawValue
            ).fetchCount(db)
            if clash > 0 {
                throw VaultError(
                    .alreadyExists, "server '\(point.serverName)' already has a point named '\(point.name)'")
            }
            try PointRow(point).insert(db)
            for tag in tags { try PointTagRow(PointTag(pointId: point.id, key: tag.key, value: tag.value)).insert(db) }
        }
    }

    /// Removes a point registered but never run; false when it had already started.
    func discardPoint(_ id: String) -> Bool {
        (try? write { db in
            try db.execute(sql: "DELETE FROM point WHERE id = ? AND status = 'creating'", arguments: [id])
            return db.changesCount > 0
        }) ?? false
    }

    func updateProgress(point id: String, done: Int64, total: Int64) {
        _ = try? write { db in
            try db.execute(
                sql: "UPDATE point SET progressDone = ?, progressTotal = ? WHERE id = ? AND status = 'creating'",
                arguments: [done, total, id])
        }
    }

    /// Commits a finished point with its per-disk sizes in one transaction.
    func finishPoint(
        _ id: String, disks: [PointDisk], at time: Date, frozenMs: Int64? = nil, warning: String? = nil
    ) throws {
        try write { db in
            for disk in disks { try PointDiskRow(disk).insert(db) }
            try db.execute(
                sql: """
                    UPDATE point SET status = 'active', finishedAt = ?, progressDone = progressTotal, frozenMs = ?,
                      warning = ? WHERE id = ?
                    """,
                arguments: [time, frozenMs, warning, id])
        }
    }

    /// Marks a point that is still `creating` as failed; returns false when it was not
    /// (another process committed or failed it first). `retrySlot` clears a policy point's
    /// slot, so the scheduler runs that slot again: for backups that were cancelled or cut
    /// off rather than ones that failed on their own.
    @discardableResult
    /// Records a point being made as failed: true when it was being made, false when it was
    /// not (it ended meanwhile); throws when the catalog cannot be written.
    func failPoint(_ id: String, error: String, at time: Date, retrySlot: Bool = false) throws -> Bool {
        try write { db in
            try db.execute(
                sql: """
                    UPDATE point SET status = 'failed', error = ?, finishedAt = ?, slot = CASE WHEN ? THEN NULL ELSE slot END
                    WHERE id = ? AND status = 'creating'
                    """, arguments: [error, time, retrySlot, id])
            return db.changesCount > 0
        }
    }

    /// Points whose backup has not ended, as far as the catalog knows, oldest first.
    public func pointsBeingMade() throws -> [Point] {
        try read {
            try PointRow.filter(Column("status") == PointStatus.creating.rawValue)
                .order(Column("startedAt"), Column("id")).points($0)
        }
    }

    /// Each server's latest attempt (the last started, whatever became of it), by server name:
    /// one query, where the servers page read every point before.
    public func latestPointByServer() throws -> [String: Point] {
        try read { db in
            let columns = PointRow.columns.joined(separator: ", ")
            let rows = try PointRow.fetchAll(
                db,
                sql: """
                    SELECT \(columns) FROM (
                      SELECT \(columns), ROW_NUMBER() OVER (PARTITION BY serverName ORDER BY startedAt DESC, id DESC) AS n
                      FROM point) WHERE n = 1 ORDER BY startedAt, id
                    """)
            // Two names SQLite tells apart may be one String (é and e + U+0301): the later wins.
            return Dictionary(rows.map { ($0.point.serverName, $0.point) }, uniquingKeysWith: { _, later in later })
        }
    }

    public func point(id: String) throws -> Point? {
        try read { try PointRow.find(id, $0) }
    }

    /// Finds a point by id, unique id prefix (at least 4 characters), or `SERVER/NAME`.
    public func point(matching reference: String) throws -> Point {
        let found: [Point] = try read { db in
            if let exact = try PointRow.find(reference, db), exact.deletion != .deleted { return [exact] }
            if let slash = reference.firstIndex(of: "/") {
                let server = String(reference[..<slash])
                let name = String(reference[reference.index(after: slash)...])
                return try PointRow.filter(
                    Column("serverName") == server && Column("name") == name
                        && Column("deletion") != Deletion.deleted.rawValue
                ).points(db)
            }
            guard reference.count >= 4 else { return [] }
            return try PointRow.filter(
                Column("id").like("\(reference)%") && Column("deletion") != Deletion.deleted.rawValue
            ).points(db)
        }
        guard let point = found.first else {
            let hint =
                reference.count < 4 && !reference.contains("/") ? " (an id prefix needs 4 or more characters)" : ""
            throw VaultError.notFound("no point matches '\(reference)'\(hint)")
        }
        let restorable = found.filter { $0.status != .failed }
        if found.count > 1 && restorable.count == 1 { return restorable[0] }
        guard found.count == 1 else {
            throw VaultError.invalid("'\(reference)' matches \(found.count) points; give more of the id")
        }
        return point
    }

    /// Points not deleted for good, oldest first; optionally of one server, optionally
    /// including soft-deleted ones.
    public func points(server: Int64? = nil, includeSoftDeleted: Bool = false) throws -> [Point] {
        try read { db in
            var request = PointRow.filter(Column("deletion") != Deletion.deleted.rawValue)
            if !includeSoftDeleted { request = request.filter(Column("deletion") == Deletion.none.rawValue) }
            if let server { request = request.filter(Column("serverId") == server) }
            return try request.order(Column("startedAt"), Column("id")).points(db)
        }
    }

    /// One page of the points `selection` takes, newest first, and how many it takes in all:
    /// two queries, whatever the number of points (a listing of 10,000 read them all at each
    /// page before).
    public func pointPage(_ selection: PointSelection, offset: Int, limit: Int) throws -> (total: Int, points: [Point])
    {
        // In SQL of its own, each statement prepared once (GRDB's query builder wrote and
        // prepared the three statements again at every page: a tenth of a page's time).
        var conditions: [String] = []
        var arguments = StatementArguments()
        func condition(_ sql: String, _ values: [(any DatabaseValueConvertible)?] = []) {
            conditions.append(sql)
            arguments += StatementArguments(values)
        }
        if !selection.history {
            condition("deletion != ?", [Deletion.deleted.rawValue])
            if !selection.includeSoftDeleted { condition("deletion = ?", [Deletion.none.rawValue]) }
        }
        if let server = selection.server { condition("serverId = ?", [server]) }
        let filter = selection.filter
        if let vault = filter.vault { condition("vaultName = ?", [vault]) }
        if let kind = filter.kind { condition("kind = ?", [kind.rawValue]) }
        if let since = filter.since { condition("startedAt >= ?", [since]) }
        if let before = filter.before { condition("startedAt < ?", [before]) }
        if let schedule = selection.schedule { condition("schedule = ?", [schedule.rawValue]) }
        if let status = selection.status {
            condition("status = ? AND deletion != ?", [status.rawValue, Deletion.deleted.rawValue])
        }
        if let key = selection.tagKey {
            let value = selection.tagValue
            condition(
                "EXISTS (SELECT 1 FROM pointTag WHERE pointTag.pointId = point.id AND pointTag.key = ?"
                    + (value == nil ? ")" : " AND pointTag.value = ?)"), value.map { [key, $0] } ?? [key])
        }
        let clause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return try read { db in
            let total =
                try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM point" + clause), arguments: arguments)
                ?? 0
            // The page's ids first (sorting 10,000 ids and times is a third of sorting their
            // rows), then their rows.
            let ids = try String.fetchAll(
                db.cachedStatement(
                    sql: "SELECT id FROM point\(clause) ORDER BY startedAt DESC, id DESC LIMIT ? OFFSET ?"),
                arguments: arguments + [limit, offset])
            let rows = Dictionary(
                try PointRow.rows(ids: ids, db).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            return (total, ids.compactMap { rows[$0] })
        }
    }

    /// Every point ever attempted, for history.
    public func allPoints(server: Int64? = nil) throws -> [Point] {
        try read { db in
            var request = PointRow.all()
            if let server { request = request.filter(Column("serverId") == server) }
            return try request.order(Column("startedAt"), Column("id")).points(db)
        }
    }

    /// The disks of every point (of one server's points, or of the points `ids` names), by
    /// point id, in one query.
    public func pointDisksByPoint(server: Int64? = nil, ids: [String]? = nil) throws -> [String: [PointDisk]] {
        try byPoint(PointDiskRow.self, server: server, ids: ids)
    }

    /// Rows of a table of point details (disks, tags) for every point, one server's points or
    /// the points `ids` names, by point id, in one query.
    private func byPoint<Row: PointDetailRow>(_ type: Row.Type, server: Int64?, ids: [String]?) throws -> [String: [Row
        .Value]]
    {
        try read { db in
            let table = Row.databaseTableName
            let column = Row.orderColumn
            let rows: [Row]
            if let ids {
                rows = try Row.fetchAll(
                    db, sql: Row.select(whereIn: "pointId", ids.count) + " ORDER BY \(column)",
                    arguments: StatementArguments(ids))
            } else if let server {
                rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT \(Row.selection) FROM \(table) JOIN point ON point.id = \(table).pointId
                        WHERE point.serverId = ? ORDER BY \(table).\(column)
                        """, arguments: [server])
            } else {
                rows = try Row.order(Column(column)).fetchAll(db)
            }
            return Dictionary(grouping: rows, by: \.pointId).mapValues { $0.map(\.value) }
        }
    }

    public func pointDisks(_ id: String) throws -> [PointDisk] {
        try read { try PointDiskRow.of(point: id, $0) }
    }

    /// The tags of every point (of one server's points, or of the points `ids` names), by
    /// point id, in one query.
    public func tagsByPoint(server: Int64? = nil, ids: [String]? = nil) throws -> [String: [PointTag]] {
        try byPoint(PointTagRow.self, server: server, ids: ids)
    }

    public func tags(_ id: String) throws -> [PointTag] {
        try read { try PointTagRow.of(point: id, $0) }
    }

    /// Points whose parent is `id` and which are not deleted for good.
    public func dependants(of id: String) throws -> [Point] {
        try read { try dependants(of: id, db: $0) }
    }

    /// Points whose parent is `id` and which are not deleted for good.
    func dependants(of id: String, db: Database) throws -> [Point] {
        try PointRow.filter(Column("parentId") == id && Column("deletion") != Deletion.deleted.rawValue).points(db)
    }

    /// The points of a chain, from its full to `id`, following parent links.
    public func chain(endingAt id: String) throws -> [Point] {
        try read { db in
            var chain: [Point] = []
            var next: String? = id
            while let current = next {
                guard let point = try PointRow.find(current, db) else {
                    throw VaultError(.corrupt, "point \(current) in a chain is missing from the catalog")
                }
                chain.append(point)
                next = point.parentId
                if chain.count > 100_000 { throw VaultError(.corrupt, "point \(id) has a cyclic chain") }
            }
            return chain.reversed()
        }
    }
}

/// Points as their manifests describe them.
extension Catalog {
    /// What the catalog knows of one point, as its manifest holds it.
    func manifest(ofPoint id: String) throws -> PointManifest? {
        try read { db in
            guard let point = try PointRow.find(id, db) else { return nil }
            return PointManifest(
                point, tags: try PointTagRow.of(point: id, db), disks: try PointDiskRow.of(point: id, db))
        }
    }

    /// Every point the catalog knows, as manifests, read in one transaction.
    func allPointManifests() throws -> [PointManifest] {
        try read { db in
            let tags = Dictionary(grouping: try PointTagRow.order(Column("key")).fetchAll(db).map(\.tag), by: \.pointId)
            let disks = Dictionary(
                grouping: try PointDiskRow.order(Column("disk")).fetchAll(db).map(\.disk), by: \.pointId)
            return try PointRow.order(Column("startedAt"), Column("id")).points(db).map {
                PointManifest($0, tags: tags[$0.id] ?? [], disks: disks[$0.id] ?? [])
            }
        }
    }

    /// Commits a point whose backup finished but whose process died before the catalog
    /// said so: its manifest and maps were complete. False when it was not `creating`.
    func rollForward(_ manifest: PointManifest) throws -> Bool {
        try write { db in
            guard let current = try PointRow.find(manifest.point.id, db), current.status == .creating else {
                return false
            }
            try PointDiskRow.filter(Column("pointId") == current.id).deleteAll(db)
            for disk in manifest.disks { try PointDiskRow(disk).insert(db) }
            try db.execute(
                sql: """
                    UPDATE point SET status = 'active', finishedAt = ?, progressDone = progressTotal, frozenMs = ?,
                      warning = ? WHERE id = ?
                    """,
                arguments: [
                    manifest.point.finishedAt ?? Date(), manifest.point.frozenMs, manifest.point.warning, current.id,
                ])
            return true
        }
    }
}
