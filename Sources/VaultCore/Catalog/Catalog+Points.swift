import Foundation
import GRDB

/// Points: registering, finishing, finding and listing them.
extension Catalog {
    /// Registers a point as `creating`. A name already used by a live or soft-deleted point of
    /// the same server is refused; a failed attempt does not hold its name.
    func insertPoint(_ point: Point, tags: [(key: String, value: String)]) throws {
        try write { db in
            let clash = try Point.filter(Column("serverId") == point.serverId && Column("name") == point.name
                                         && Column("deletion") != Deletion.deleted.rawValue
                                         && Column("status") != PointStatus.failed.rawValue).fetchCount(db)
            if clash > 0 {
                throw VaultError(.alreadyExists, "server '\(point.serverName)' already has a point named '\(point.name)'")
            }
            try point.insert(db)
            for tag in tags { try PointTag(pointId: point.id, key: tag.key, value: tag.value).insert(db) }
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
            try db.execute(sql: "UPDATE point SET progressDone = ?, progressTotal = ? WHERE id = ? AND status = 'creating'",
                           arguments: [done, total, id])
        }
    }

    /// Commits a finished point with its per-disk sizes in one transaction.
    func finishPoint(_ id: String, disks: [PointDisk], at time: Date) throws {
        try write { db in
            for disk in disks { try disk.insert(db) }
            try db.execute(sql: "UPDATE point SET status = 'active', finishedAt = ?, progressDone = progressTotal WHERE id = ?",
                           arguments: [time, id])
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
            try db.execute(sql: """
                UPDATE point SET status = 'failed', error = ?, finishedAt = ?, slot = CASE WHEN ? THEN NULL ELSE slot END
                WHERE id = ? AND status = 'creating'
                """, arguments: [error, time, retrySlot, id])
            return db.changesCount > 0
        }
    }

    /// Points whose backup has not ended, as far as the catalog knows.
    func pointsBeingMade() throws -> [Point] {
        try read { try Point.filter(Column("status") == PointStatus.creating.rawValue).fetchAll($0) }
    }

    public func point(id: String) throws -> Point? {
        try read { try Point.fetchOne($0, key: id) }
    }

    /// Finds a point by id, unique id prefix (at least 4 characters), or `SERVER/NAME`.
    public func point(matching reference: String) throws -> Point {
        let found: [Point] = try read { db in
            if let exact = try Point.fetchOne(db, key: reference), exact.deletion != .deleted { return [exact] }
            if let slash = reference.firstIndex(of: "/") {
                let server = String(reference[..<slash]), name = String(reference[reference.index(after: slash)...])
                return try Point.filter(Column("serverName") == server && Column("name") == name
                                        && Column("deletion") != Deletion.deleted.rawValue).fetchAll(db)
            }
            guard reference.count >= 4 else { return [] }
            return try Point.filter(Column("id").like("\(reference)%") && Column("deletion") != Deletion.deleted.rawValue).fetchAll(db)
        }
        guard let point = found.first else {
            let hint = reference.count < 4 && !reference.contains("/") ? " (an id prefix needs 4 or more characters)" : ""
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
            var request = Point.filter(Column("deletion") != Deletion.deleted.rawValue)
            if !includeSoftDeleted { request = request.filter(Column("deletion") == Deletion.none.rawValue) }
            if let server { request = request.filter(Column("serverId") == server) }
            return try request.order(Column("startedAt"), Column("id")).fetchAll(db)
        }
    }

    /// Every point ever attempted, for history.
    public func allPoints(server: Int64? = nil) throws -> [Point] {
        try read { db in
            var request = Point.all()
            if let server { request = request.filter(Column("serverId") == server) }
            return try request.order(Column("startedAt"), Column("id")).fetchAll(db)
        }
    }

    /// The disks of every point (of one server's points, or of the points `ids` names), by
    /// point id, in one query.
    public func pointDisksByPoint(server: Int64? = nil, ids: [String]? = nil) throws -> [String: [PointDisk]] {
        try byPoint(PointDisk.self, orderedBy: "disk", server: server, ids: ids, pointId: \.pointId)
    }

    /// Rows of a table of point details (disks, tags) for every point, one server's points or
    /// the points `ids` names, by point id, in one query.
    private func byPoint<Row: FetchableRecord & TableRecord>(_ type: Row.Type, orderedBy column: String, server: Int64?,
                                                             ids: [String]?, pointId: KeyPath<Row, String>) throws -> [String: [Row]] {
        try read { db in
            let table = Row.databaseTableName
            let rows: [Row]
            if let ids {
                rows = try Row.filter(ids.contains(Column("pointId"))).order(Column(column)).fetchAll(db)
            } else if let server {
                rows = try Row.fetchAll(db, sql: """
                    SELECT \(table).* FROM \(table) JOIN point ON point.id = \(table).pointId
                    WHERE point.serverId = ? ORDER BY \(table).\(column)
                    """, arguments: [server])
            } else {
                rows = try Row.order(Column(column)).fetchAll(db)
            }
            return Dictionary(grouping: rows, by: { $0[keyPath: pointId] })
        }
    }

    public func pointDisks(_ id: String) throws -> [PointDisk] {
        try read { try PointDisk.filter(Column("pointId") == id).order(Column("disk")).fetchAll($0) }
    }

    /// The tags of every point (of one server's points, or of the points `ids` names), by
    /// point id, in one query.
    public func tagsByPoint(server: Int64? = nil, ids: [String]? = nil) throws -> [String: [PointTag]] {
        try byPoint(PointTag.self, orderedBy: "key", server: server, ids: ids, pointId: \.pointId)
    }

    public func tags(_ id: String) throws -> [PointTag] {
        try read { try PointTag.filter(Column("pointId") == id).order(Column("key")).fetchAll($0) }
    }

    /// Points whose parent is `id` and which are not deleted for good.
    func dependants(of id: String, db: Database) throws -> [Point] {
        try Point.filter(Column("parentId") == id && Column("deletion") != Deletion.deleted.rawValue).fetchAll(db)
    }

    /// The points of a chain, from its full to `id`, following parent links.
    public func chain(endingAt id: String) throws -> [Point] {
        try read { db in
            var chain: [Point] = []
            var next: String? = id
            while let current = next {
                guard let point = try Point.fetchOne(db, key: current) else {
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
            guard let point = try Point.fetchOne(db, key: id) else { return nil }
            return PointManifest(point: point,
                                 tags: try PointTag.filter(Column("pointId") == id).order(Column("key")).fetchAll(db),
                                 disks: try PointDisk.filter(Column("pointId") == id).order(Column("disk")).fetchAll(db))
        }
    }

    /// Every point the catalog knows, as manifests, read in one transaction.
    func allPointManifests() throws -> [PointManifest] {
        try read { db in
            let tags = Dictionary(grouping: try PointTag.order(Column("key")).fetchAll(db), by: \.pointId)
            let disks = Dictionary(grouping: try PointDisk.order(Column("disk")).fetchAll(db), by: \.pointId)
            return try Point.order(Column("startedAt"), Column("id")).fetchAll(db).map {
                PointManifest(point: $0, tags: tags[$0.id] ?? [], disks: disks[$0.id] ?? [])
            }
        }
    }

    /// Commits a point whose backup finished but whose process died before the catalog
    /// said so: its manifest and maps were complete. False when it was not `creating`.
    func rollForward(_ manifest: PointManifest) throws -> Bool {
        try write { db in
            guard let current = try Point.fetchOne(db, key: manifest.point.id), current.status == .creating else { return false }
            try PointDisk.filter(Column("pointId") == current.id).deleteAll(db)
            for disk in manifest.disks { try disk.insert(db) }
            try db.execute(sql: "UPDATE point SET status = 'active', finishedAt = ?, progressDone = progressTotal WHERE id = ?",
                           arguments: [manifest.point.finishedAt ?? Date(), current.id])
            return true
        }
    }
}
