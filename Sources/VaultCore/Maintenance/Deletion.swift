import Foundation

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
            tidy("the manifest of point \(id) may say a change that was not made; 'vaultctl verify' names it") {
                try syncManifest(of: id)
            }
            throw error
        }
    }

    /// Soft-deletes a point: hidden, restorable with `undelete` until purged.
    /// Soft-deletes every point of `points`, newest first, or none: refused whole, before
    /// anything changes, when a point that stays depends on one of them, or when one is being
    /// made or is deleted already.
    public func softDelete(points given: [Point], now: Date = Date()) throws -> [Point] {
        try requireWritable("delete points")
        // A point named twice (by id and by name) is one point.
        var seen: Set<String> = []
        let points = given.filter { seen.insert($0.id).inserted }
        guard !points.isEmpty else { throw VaultError.notFound("no point matches the selection; nothing was deleted") }
        let chosen = Set(points.map(\.id))
        for point in points {
            guard point.deletion == .none else { throw VaultError.invalid("point \(point.name) is already deleted") }
            guard point.status != .creating else {
                throw VaultError(.busy, "point \(point.name) is still being made; wait for its backup to end")
            }
            let kept = try catalog.dependants(of: point.id).filter { $0.deletion == .none && !chosen.contains($0.id) }
            if let first = kept.first {
                throw VaultError(
                    .hasDependants,
                    "point \(point.serverName)/\(point.name) has the dependent incremental point \(first.name), which would stay; delete it too, or neither; nothing was deleted"
                )
            }
        }
        // An incremental starts after its parent: newest first deletes each before its parent.
        return try points.sorted { $0.startedAt > $1.startedAt }.map { try softDelete($0.id, now: now) }
    }

    public func softDelete(_ reference: String, now: Date = Date()) throws -> Point {
        try requireWritable("delete a point")
        let point = try catalog.point(matching: reference)
        return try changePoint(
            point.id,
            {
                $0.deletion = .soft
                $0.deletedAt = now
            }
        ) {
            try catalog.changePoint(point.id) { current, dependants, _ in
                guard current.deletion == .none else {
                    throw VaultError.invalid("point \(current.name) is already deleted")
                }
                guard current.status != .creating else {
                    throw VaultError(.busy, "point \(current.name) is still being made; wait for its backup to end")
                }
                let live = dependants.filter { $0.deletion == .none }
                if !live.isEmpty {
                    let names = live.map(\.name).joined(separator: ", ")
                    throw VaultError(
                        .hasDependants,
                        "point \(current.name) has dependent incremental point(s) \(names); delete them first")
                }
                current.deletion = .soft
                current.deletedAt = now
            }
        }
    }

    /// Restores a soft-deleted point.
    public func undelete(_ reference: String) throws -> Point {
        try requireWritable("undelete a point")
        let point = try catalog.point(matching: reference)
        return try changePoint(
            point.id,
            {
                $0.deletion = .none
                $0.deletedAt = nil
            }
        ) {
            try catalog.changePoint(point.id) { current, _, parent in
                guard current.deletion == .soft else {
                    throw VaultError.invalid("point \(current.name) is not soft-deleted")
                }
                if let parent, parent.deletion != .none {
                    throw VaultError(
                        .hasDependants,
                        "point \(current.name) depends on \(parent.name), which is deleted; undelete that first")
                }
                current.deletion = .none
                current.deletedAt = nil
            }
        }
    }

    /// Deletes soft-deleted points for good, those deleted at least `olderThan` ago, children
    /// before parents; then collects unused chunks.
    public func purge(olderThan: TimeInterval = 0, now: Date = Date()) throws -> Removal {
        try requireWritable("purge points")
        let candidates = try catalog.softDeletedPoints().filter {
            ($0.deletedAt ?? now) <= now.addingTimeInterval(-olderThan)
        }
        var purged: [Point] = []
        var purgedIds = Set<String>()
        for point in candidates {
            // The check and the deletion share one transaction, so a point undeleted meanwhile
            // (or given a dependant) is left alone.
            let done = try changePoint(
                point.id,
                {
                    $0.deletion = .deleted
                    $0.deletedAt = now
                }
            ) {
                try catalog.purgePoint(point.id, at: now, purged: purgedIds)
            }
            guard done else {
                tidy("the manifest of point \(point.id) may say it was purged; 'vaultctl verify' names it") {
                    try syncManifest(of: point.id)
                }
                continue
            }
            purged.append(point)
            purgedIds.insert(point.id)
        }
        return Removal(points: purged, collectionProblem: purged.isEmpty ? nil : collectGarbage(after: "purge"))
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
        try catalog.markDeleted(points.map(\.id), at: now)
        FaultInjection.reached("deletion-committed")
    }
}

/// Points deleted for good by a purge or by retention, and whether the space they held was
/// collected.
public struct Removal: Sendable {
    public var points: [Point]
    /// Why garbage collection did not run after the deletion, when it did not: the points
    /// are gone all the same, and their chunks go at the next `vaultctl gc`.
    public var collectionProblem: String?

    public init(points: [Point] = [], collectionProblem: String? = nil) {
        self.points = points
        self.collectionProblem = collectionProblem
    }
}
