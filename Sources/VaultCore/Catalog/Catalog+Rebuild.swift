import Foundation
internal import GRDB

/// Filling a new catalog from the repository's manifests.
extension Catalog {
    /// Inserts every vault, server and point the manifests describe, in one transaction.
    /// Catalog ids are local: links between records are made again by name.
    func restore(vaults: [VaultManifest], servers: [ServerManifest], points: [PointManifest]) throws {
        try write { db in
            var vaultIds: [String: Int64] = [:]
            for manifest in vaults {
                vaultIds[manifest.name] = try insert(manifest, db).id
            }
            var serverIds: [String: Int64] = [:]
            for manifest in servers {
                serverIds[manifest.name] = try insert(manifest, vaultId: manifest.vault.flatMap { vaultIds[$0] }, db).id
            }
            // Parents first: every parent started before its children.
            for manifest in points.sorted(by: { ($0.point.startedAt, $0.point.id) < ($1.point.startedAt, $1.point.id) })
            {
                var point = manifest.point
                point.serverId = serverIds[point.serverName]
                point.vaultId = vaultIds[point.vaultName]
                try insert(point, manifest, db)
            }
        }
    }

    private func insert(_ manifest: VaultManifest, _ db: Database) throws -> Vault {
        try VaultRow.insert(name: manifest.name, createdAt: manifest.createdAt, policy: manifest.policy, db)
    }

    private func insert(_ manifest: ServerManifest, vaultId: Int64?, _ db: Database) throws -> Server {
        let server = try ServerRow.insert(
            name: manifest.name, vaultId: vaultId, hooks: manifest.hooks,
            createdAt: manifest.createdAt, db)
        for disk in manifest.disks { try DiskRow.insert(server: server.id, name: disk.name, path: disk.path, db) }
        return server
    }

    /// Inserts a point as `manifest` describes it, linked to this catalog's server and vault.
    private func insert(_ point: Point, _ manifest: PointManifest, _ db: Database) throws {
        try PointRow(point).insert(db)
        for tag in manifest.tags { try PointTagRow(tag).insert(db) }
        for disk in manifest.disks { try PointDiskRow(disk).insert(db) }
    }

    /// Brings in what other hosts sharing an object store wrote: vaults and servers this
    /// catalog lacks, points it lacks, and for points it has, only moves forward (a point
    /// another host finished, a deletion made elsewhere), so a manifest read just before this
    /// host changed a point never undoes the change. A point that cannot be taken in (its
    /// parent is not known yet, its name is in use here) is skipped and returned, to be
    /// tried again. Returns how many records changed and the ids of skipped points.
    func merge(vaults: [VaultManifest], servers: [ServerManifest], points: [PointManifest]) throws
        -> (changed: Int, skipped: Set<String>)
    {
        try write { db in
            var changed = 0
            var skipped = Set<String>()
            for manifest in vaults where try VaultRow.named(manifest.name, db) == nil {
                _ = try insert(manifest, db)
                changed += 1
            }
            for manifest in servers where try ServerRow.named(manifest.name, db) == nil {
                _ = try insert(manifest, vaultId: try manifest.vault.flatMap { try VaultRow.named($0, db)?.id }, db)
                changed += 1
            }
            for manifest in points.sorted(by: { ($0.point.startedAt, $0.point.id) < ($1.point.startedAt, $1.point.id) })
            {
                var point = manifest.point
                point.serverId = try ServerRow.named(point.serverName, db)?.id
                point.vaultId = try VaultRow.named(point.vaultName, db)?.id
                guard var local = try PointRow.find(point.id, db) else {
                    if let parent = point.parentId, try PointRow.find(parent, db) == nil {
                        skipped.insert(point.id)
                        continue
                    }
                    do {
                        try db.inSavepoint {
                            try insert(point, manifest, db)
                            return .commit
                        }
                        changed += 1
                    } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                        skipped.insert(point.id)
                    }
                    continue
                }
                var updated = false
                if local.status == .creating && point.status != .creating {
                    local.status = point.status
                    local.error = point.error
                    local.finishedAt = point.finishedAt
                    local.progressDone = point.progressDone
                    local.progressTotal = point.progressTotal
                    local.frozenMs = point.frozenMs
                    local.warning = point.warning
                    try PointDiskRow.filter(Column("pointId") == point.id).deleteAll(db)
                    for disk in manifest.disks { try PointDiskRow(disk).insert(db) }
                    updated = true
                }
                if point.deletion.rank > local.deletion.rank {
                    local.deletion = point.deletion
                    local.deletedAt = point.deletedAt
                    updated = true
                }
                if updated {
                    try PointRow(local).update(db)
                    changed += 1
                }
            }
            return (changed, skipped)
        }
    }
}

extension Deletion {
    /// Deletions only move forward when merged from another host: none, soft, deleted.
    var rank: Int {
        switch self {
        case .none: return 0
        case .soft: return 1
        case .deleted: return 2
        }
    }
}
