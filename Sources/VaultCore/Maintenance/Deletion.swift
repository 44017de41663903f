import Foundation
import GRDB

/// Soft delete, undelete and purge. A point that others depend on is never deleted on its
/// own: the user is told which points to delete first, so no chain is ever broken. Each
/// change is written to the point's manifest first and committed by the catalog; maps and
/// chunks are removed only by garbage collection, which honours open readers.
extension Repository {
    /// Writes the manifest of `point` as `change` leaves it, runs `commit`, and puts the
    /// manifest back as the catalog has it when the commit is refused or fails.
    private func changePoint<T>(_ id: String, _ change: (inout Point) -> Void, commit: () throws -> T) throws -> T {
        if var manifest = try catalog.manifest(ofPoint: id) {
            change(&manifest.point)
            try manifests.write(manifest)
        }
        FaultInjection.reached("deletion-manifest-written")
        do {
            let result = try commit()
            FaultInjection.reached("deletion-committed")
            return result
        } catch {
            try? syncManifest(of: id)
            throw error
        }
    }

    /// Soft-deletes a point: hidden, restorable with `undelete` until purged.
    public func softDelete(_ reference: String, now: Date = Date()) throws -> Point {
        try requireWritable("delete a point")
        let point = try catalog.point(matching: reference)
        return try changePoint(point.id, { $0.deletion = .soft; $0.deletedAt = now }) { try catalog.write { db in
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
        } }
    }

    /// Restores a soft-deleted point.
    public func undelete(_ reference: String) throws -> Point {
        try requireWritable("undelete a point")
        let point = try catalog.point(matching: reference)
        return try changePoint(point.id, { $0.deletion = .none; $0.deletedAt = nil }) { try catalog.write { db in
            guard var current = try Point.fetchOne(db, key: point.id) else { throw VaultError.notFound("no point \(reference)") }
            guard current.deletion == .soft else { throw VaultError.invalid("point \(current.name) is not soft-deleted") }
            if let parentId = current.parentId, let parent = try Point.fetchOne(db, key: parentId), parent.deletion != .none {
                throw VaultError(.hasDependants, "point \(current.name) depends on \(parent.name), which is deleted; undelete that first")
            }
            current.deletion = .none
            current.deletedAt = nil
            try current.update(db)
            return current
        } }
    }

    /// Deletes soft-deleted points for good, those deleted at least `olderThan` ago, children
    /// before parents; then collects unused chunks.
    public func purge(olderThan: TimeInterval = 0, now: Date = Date()) throws -> [Point] {
        try requireWritable("purge points")
        let candidates = try catalog.read { db in
            try Point.filter(Column("deletion") == Deletion.soft.rawValue).order(Column("startedAt").desc).fetchAll(db)
        }.filter { ($0.deletedAt ?? now) <= now.addingTimeInterval(-olderThan) }
        var purged: [Point] = []
        var purgedIds = Set<String>()
        for point in candidates {
            // The check and the deletion share one transaction, so a point undeleted meanwhile
            // (or given a dependant) is left alone.
            let done = try changePoint(point.id, { $0.deletion = .deleted; $0.deletedAt = now }) {
                try catalog.write { db -> Bool in
                    let blocked = try catalog.dependants(of: point.id, db: db).contains { !purgedIds.contains($0.id) }
                    if blocked { return false }
                    try db.execute(sql: "UPDATE point SET deletion = 'deleted', deletedAt = ? WHERE id = ? AND deletion = 'soft'",
                                   arguments: [now, point.id])
                    return db.changesCount > 0
                }
            }
            guard done else {
                try? syncManifest(of: point.id)
                continue
            }
            purged.append(point)
            purgedIds.insert(point.id)
        }
        if !purged.isEmpty { _ = try? GarbageCollector(repository: self).collect() }
        return purged
    }

    /// Marks points deleted (history keeps them), manifests first; garbage collection then
    /// removes their maps and chunks.
    func deleteForGood(_ points: [Point], at now: Date) throws {
        try requireWritable("delete points")
        for point in points {
            if var manifest = try catalog.manifest(ofPoint: point.id) {
                manifest.point.deletion = .deleted
                manifest.point.deletedAt = now
                try manifests.write(manifest)
            }
        }
        FaultInjection.reached("deletion-manifest-written")
        try catalog.write { db in
            for point in points {
                try db.execute(sql: "UPDATE point SET deletion = 'deleted', deletedAt = ? WHERE id = ?", arguments: [now, point.id])
            }
        }
        FaultInjection.reached("deletion-committed")
    }
}
