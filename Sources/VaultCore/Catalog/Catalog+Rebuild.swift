import Foundation
import GRDB

/// Filling a new catalog from the repository's manifests.
extension Catalog {
    /// Inserts every vault, server and point the manifests describe, in one transaction.
    /// Catalog ids are local: links between records are made again by name.
    func restore(vaults: [VaultManifest], servers: [ServerManifest], points: [PointManifest]) throws {
        try write { db in
            var vaultIds: [String: Int64] = [:]
            for manifest in vaults {
                var vault = manifest.vault
                vault.id = nil
                try vault.insert(db)
                vaultIds[vault.name] = vault.id
            }
            var serverIds: [String: Int64] = [:]
            for manifest in servers {
                var server = manifest.server
                server.id = nil
                server.vaultId = manifest.vault.flatMap { vaultIds[$0] }
                try server.insert(db)
                serverIds[server.name] = server.id
                for var disk in manifest.disks {
                    disk.id = nil
                    disk.serverId = server.id!
                    try disk.insert(db)
                }
            }
            // Parents first: every parent started before its children.
            for manifest in points.sorted(by: { ($0.point.startedAt, $0.point.id) < ($1.point.startedAt, $1.point.id) }) {
                var point = manifest.point
                point.serverId = serverIds[point.serverName]
                point.vaultId = vaultIds[point.vaultName]
                try point.insert(db)
                for tag in manifest.tags { try tag.insert(db) }
                for disk in manifest.disks { try disk.insert(db) }
            }
        }
    }

    /// Brings in what other hosts sharing an object store wrote: vaults and servers this
    /// catalog lacks, points it lacks, and for points it has, only moves forward (a point
    /// another host finished, a deletion made elsewhere), so a manifest read just before this
    /// host changed a point never undoes the change. A point that cannot be taken in (its
    /// parent is not known yet, its name is in use here) is skipped and returned, to be
    /// tried again. Returns how many records changed and the ids of skipped points.
    func merge(vaults: [VaultManifest], servers: [ServerManifest], points: [PointManifest]) throws
        -> (changed: Int, skipped: Set<String>) {
        try write { db in
            var changed = 0
            var skipped = Set<String>()
            for manifest in vaults where try Vault.filter(Column("name") == manifest.vault.name).fetchOne(db) == nil {
                var vault = manifest.vault
                vault.id = nil
                try vault.insert(db)
                changed += 1
            }
            for manifest in servers where try Server.filter(Column("name") == manifest.server.name).fetchOne(db) == nil {
                var server = manifest.server
                server.id = nil
                server.vaultId = try manifest.vault.flatMap { try Vault.filter(Column("name") == $0).fetchOne(db)?.id }
                try server.insert(db)
                for var disk in manifest.disks {
                    disk.id = nil
                    disk.serverId = server.id!
                    try disk.insert(db)
                }
                changed += 1
            }
            for manifest in points.sorted(by: { ($0.point.startedAt, $0.point.id) < ($1.point.startedAt, $1.point.id) }) {
                var point = manifest.point
                point.serverId = try Server.filter(Column("name") == point.serverName).fetchOne(db)?.id
                point.vaultId = try Vault.filter(Column("name") == point.vaultName).fetchOne(db)?.id
                guard var local = try Point.fetchOne(db, key: point.id) else {
                    if let parent = point.parentId, try Point.fetchOne(db, key: parent) == nil {
                        skipped.insert(point.id)
                        continue
                    }
                    do {
                        try db.inSavepoint {
                            try point.insert(db)
                            for tag in manifest.tags { try tag.insert(db) }
                            for disk in manifest.disks { try disk.insert(db) }
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
                    try PointDisk.filter(Column("pointId") == point.id).deleteAll(db)
                    for disk in manifest.disks { try disk.insert(db) }
                    updated = true
                }
                if point.deletion.rank > local.deletion.rank {
                    local.deletion = point.deletion
                    local.deletedAt = point.deletedAt
                    updated = true
                }
                if updated {
                    try local.update(db)
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
