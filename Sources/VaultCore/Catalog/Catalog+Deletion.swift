import Foundation
internal import GRDB

/// Deletion states and the points retention and purge look at. The rules (what may be
/// deleted, undeleted or purged) are the callers'; each is checked here in the same
/// transaction as the change it allows.
extension Catalog {
    /// Changes one point in one transaction. `change` sees the point as committed, the points
    /// that depend on it (not deleted for good) and its parent, and throws to refuse.
    func changePoint(_ id: String, _ change: (inout Point, _ dependants: [Point], _ parent: Point?) throws -> Void)
        throws -> Point
    {
        try write { db in
            guard var point = try PointRow.find(id, db) else { throw VaultError.notFound("no point \(id)") }
            let parent = try point.parentId.flatMap { try PointRow.find($0, db) }
            try change(&point, try dependants(of: id, db: db), parent)
            try PointRow(point).update(db)
            return point
        }
    }

    /// Soft-deleted points, newest first.
    func softDeletedPoints() throws -> [Point] {
        try read {
            try PointRow.filter(Column("deletion") == Deletion.soft.rawValue).order(Column("startedAt").desc).points($0)
        }
    }

    /// Deletes a soft-deleted point for good unless a point outside `purged` still depends on
    /// it; false when it was blocked, or not soft-deleted any more.
    func purgePoint(_ id: String, at time: Date, purged: Set<String>) throws -> Bool {
        try write { db in
            if try dependants(of: id, db: db).contains(where: { !purged.contains($0.id) }) { return false }
            try db.execute(
                sql: "UPDATE point SET deletion = 'deleted', deletedAt = ? WHERE id = ? AND deletion = 'soft'",
                arguments: [time, id])
            return db.changesCount > 0
        }
    }

    /// Marks points deleted for good in one transaction.
    func markDeleted(_ ids: [String], at time: Date) throws {
        try write { db in
            for id in ids {
                try db.execute(
                    sql: "UPDATE point SET deletion = 'deleted', deletedAt = ? WHERE id = ?", arguments: [time, id])
            }
        }
    }

    /// A vault's policy points that are not deleted for good.
    func policyPoints(vault id: Int64) throws -> [Point] {
        try read { db in
            try PointRow.filter(
                Column("vaultId") == id && Column("schedule") == ScheduleType.policy.rawValue
                    && Column("deletion") != Deletion.deleted.rawValue
            ).points(db)
        }
    }

    /// The points of these chains that are neither deleted for good nor still being made.
    func finishedPoints(ofChains chains: [String]) throws -> [Point] {
        try read { db in
            try PointRow.filter(
                chains.contains(Column("chainId")) && Column("deletion") != Deletion.deleted.rawValue
                    && Column("status") != PointStatus.creating.rawValue
            ).points(db)
        }
    }
}
