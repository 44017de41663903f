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
}
