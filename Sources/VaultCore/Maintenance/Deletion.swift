import Foundation
import GRDB

/// Soft delete, undelete and purge. A point that others depend on is never deleted on its
/// own: the user is told which points to delete first, so no chain is ever broken.
extension Repository {
    /// Soft-deletes a point: hidden, restorable with `undelete` until purged.
    public func softDelete(_ reference: String, now: Date = Date()) throws -> Point {
        let point = try catalog.point(matching: reference)
        return try catalog.write { db in
            guard var current = try Point.fetchOne(db, key: point.id) else { throw VaultError.notFound("no point \(reference)") }
            guard current.deletion == .none else { throw VaultError.invalid("point \(current.name) is already deleted") }
            guard current.status != .creating else {
                throw VaultError(.busy, "point \(current.name) is still being made; wait for its backup to end")
            }
            let dependants = try catalog.dependants(of: current.id, db: db).filter { $0.deletion == .none }
            if !dependants.isEmpty {
                let names = dependants.map(\.name).joined(separator: ", ")
                throw VaultError(.hasDependants, "point \(current.name) has dependent incremental point(s) \(names); delete them first")
            }
            current.deletion = .soft
            current.deletedAt = now
            try current.update(db)
            return current
        }
    }

    /// Restores a soft-deleted point.
    public func undelete(_ reference: String) throws -> Point {
        let point = try catalog.point(matching: reference)
        return try catalog.write { db in
            guard var current = try Point.fetchOne(db, key: point.id) else { throw VaultError.notFound("no point \(reference)") }
            guard current.deletion == .soft else { throw VaultError.invalid("point \(current.name) is not soft-deleted") }
            if let parentId = current.parentId, let parent = try Point.fetchOne(db, key: parentId), parent.deletion != .none {
                throw VaultError(.hasDependants, "point \(current.name) depends on \(parent.name), which is deleted; undelete that first")
            }
            current.deletion = .none
            current.deletedAt = nil
            try current.update(db)
            return current
        }
    }

    /// Deletes soft-deleted points for good, those deleted at least `olderThan` ago, children
    /// before parents; then collects unused chunks.
    public func purge(olderThan: TimeInterval = 0, now: Date = Date()) throws -> [Point] {
        let candidates = try catalog.read { db in
            try Point.filter(Column("deletion") == Deletion.soft.rawValue).order(Column("startedAt").desc).fetchAll(db)
        }.filter { ($0.deletedAt ?? now) <= now.addingTimeInterval(-olderThan) }
        var purged: [Point] = []
        var purgedIds = Set<String>()
        for point in candidates {
            // The check and the deletion share one transaction, so a point undeleted meanwhile
            // (or given a dependant) is left alone.
            let done = try catalog.write { db -> Bool in
                let blocked = try catalog.dependants(of: point.id, db: db).contains { !purgedIds.contains($0.id) }
                if blocked { return false }
                try db.execute(sql: "UPDATE point SET deletion = 'deleted', deletedAt = ? WHERE id = ? AND deletion = 'soft'",
                               arguments: [now, point.id])
                return db.changesCount > 0
            }
            guard done else { continue }
            maps.remove(point: point.id)
            purged.append(point)
            purgedIds.insert(point.id)
        }
        if !purged.isEmpty { _ = try? GarbageCollector(repository: self).collect() }
        return purged
    }

    /// Marks points deleted (history keeps them) and removes their maps.
    func deleteForGood(_ points: [Point], at now: Date) throws {
        try catalog.write { db in
            for point in points {
                try db.execute(sql: "UPDATE point SET deletion = 'deleted', deletedAt = ? WHERE id = ?", arguments: [now, point.id])
            }
        }
        for point in points { maps.remove(point: point.id) }
    }
}
