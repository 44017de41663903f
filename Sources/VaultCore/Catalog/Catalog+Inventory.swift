import Foundation
internal import GRDB

/// Vaults, servers and disks.
extension Catalog {
    public func vaults() throws -> [Vault] {
        try read { try VaultRow.all($0) }
    }

    public func vault(named name: String) throws -> Vault {
        guard let vault = try read({ try VaultRow.named(name, $0) }) else {
            throw VaultError.notFound("no vault named '\(name)'")
        }
        return vault
    }

    public func vault(id: Int64) throws -> Vault? {
        try read { try VaultRow.fetchOne($0, key: id)?.vault }
    }

    @discardableResult
    func createVault(named name: String, policy: Policy?, now: Date) throws -> Vault {
        try Names.validateVaultOrServer(name, what: "vault")
        return try write { db in
            if try VaultRow.named(name, db) != nil {
                throw VaultError(.alreadyExists, "a vault named '\(name)' already exists")
            }
            return try VaultRow.insert(name: name, createdAt: now, policy: policy, db)
        }
    }

    /// Puts a server in the vault named `name`, creating it with `policy` when missing.
    /// Puts a server in the vault `name`, made with `policy` when there is none; says whether
    /// it was made.
    func assignVault(named name: String, policy: Policy, toServer server: Int64, now: Date) throws -> (
        vault: Vault, created: Bool
    ) {
        try write { db in
            let existing = try VaultRow.named(name, db)
            let vault = try existing ?? VaultRow.insert(name: name, createdAt: now, policy: policy, db)
            try db.execute(sql: "UPDATE server SET vaultId = ? WHERE id = ?", arguments: [vault.id, server])
            return (vault, existing == nil)
        }
    }

    func setPolicy(_ policy: Policy?, vault name: String) throws {
        try write { db in
            guard let vault = try VaultRow.named(name, db) else {
                throw VaultError.notFound("no vault named '\(name)'")
            }
            try VaultRow.setPolicy(policy, vault: vault.id, db)
        }
    }

    /// Removes an empty vault. A vault that still holds servers or points is refused, so no
    /// stored point loses its place.
    func removeVault(named name: String) throws {
        try write { db in
            guard let vault = try VaultRow.named(name, db) else {
                throw VaultError.notFound("no vault named '\(name)'")
            }
            let servers = try ServerRow.filter(Column("vaultId") == vault.id).fetchCount(db)
            if servers > 0 {
                throw VaultError(.notEmpty, "vault '\(name)' still has \(servers) server(s); move or remove them first")
            }
            let points = try PointRow.filter(
                Column("vaultId") == vault.id && Column("deletion") != Deletion.deleted.rawValue
            ).fetchCount(db)
            if points > 0 {
                throw VaultError(
                    .notEmpty, "vault '\(name)' still holds \(points) point(s); delete and purge them first")
            }
            try db.execute(sql: "UPDATE point SET vaultId = NULL WHERE vaultId = ?", arguments: [vault.id])
            try db.execute(sql: "DELETE FROM vault WHERE id = ?", arguments: [vault.id])
        }
    }

    public func servers(inVault vaultId: Int64? = nil) throws -> [Server] {
        try read { db in
            var request = ServerRow.order(Column("name"))
            if let vaultId { request = request.filter(Column("vaultId") == vaultId) }
            return try request.fetchAll(db).map(\.server)
        }
    }

    public func server(named name: String) throws -> Server {
        guard let server = try read({ try ServerRow.named(name, $0) }) else {
            throw VaultError.notFound("no server named '\(name)'")
        }
        return server
    }

    public func disks(ofServer serverId: Int64) throws -> [Disk] {
        try read { try DiskRow.of(server: serverId, $0) }
    }

    @discardableResult
    func addServer(
        named name: String, vault: String?, disks: [(name: String, path: String)],
        hooks: Bool, now: Date
    ) throws -> Server {
        try Names.validateVaultOrServer(name, what: "server")
        try Names.validateDisks(disks, server: name)
        return try write { db in
            if try ServerRow.named(name, db) != nil {
                throw VaultError(.alreadyExists, "a server named '\(name)' already exists")
            }
            var vaultId: Int64?
            if let vault {
                guard let found = try VaultRow.named(vault, db) else {
                    throw VaultError.notFound("no vault named '\(vault)'")
                }
                vaultId = found.id
            }
            let server = try ServerRow.insert(name: name, vaultId: vaultId, hooks: hooks, createdAt: now, db)
            for disk in disks { try DiskRow.insert(server: server.id, name: disk.name, path: disk.path, db) }
            return server
        }
    }

    /// Records whether a server has hooks (what they run is host configuration).
    func setHooks(_ hooks: Bool, server name: String) throws {
        try write { db in
            try db.execute(sql: "UPDATE server SET hooks = ? WHERE name = ?", arguments: [hooks, name])
            if db.changesCount == 0 { throw VaultError.notFound("no server named '\(name)'") }
        }
    }

    /// Moves a server to another vault; its existing points stay in the vault they were taken in.
    func moveServer(named name: String, toVault vault: String) throws {
        try write { db in
            guard let server = try ServerRow.named(name, db) else {
                throw VaultError.notFound("no server named '\(name)'")
            }
            guard let target = try VaultRow.named(vault, db) else {
                throw VaultError.notFound("no vault named '\(vault)'")
            }
            try db.execute(sql: "UPDATE server SET vaultId = ? WHERE id = ?", arguments: [target.id, server.id])
        }
    }

    /// Removes a server that has no stored points left; one with points is refused.
    func removeServer(named name: String) throws {
        try write { db in
            guard let server = try ServerRow.named(name, db) else {
                throw VaultError.notFound("no server named '\(name)'")
            }
            let points = try PointRow.filter(
                Column("serverId") == server.id && Column("deletion") != Deletion.deleted.rawValue
            ).fetchCount(db)
            if points > 0 {
                throw VaultError(
                    .notEmpty, "server '\(name)' still has \(points) point(s); delete and purge them first")
            }
            try db.execute(sql: "DELETE FROM server WHERE id = ?", arguments: [server.id])
        }
    }
}

/// Vaults and servers as their manifests describe them.
extension Catalog {
    func vaultManifests(named name: String? = nil) throws -> [VaultManifest] {
        try read { db in
            var request = VaultRow.order(Column("name"))
            if let name { request = request.filter(Column("name") == name) }
            return try request.fetchAll(db).map { VaultManifest($0.vault) }
        }
    }

    func serverManifests(named name: String? = nil) throws -> [ServerManifest] {
        try read { db in
            var request = ServerRow.order(Column("name"))
            if let name { request = request.filter(Column("name") == name) }
            let vaults = Dictionary(uniqueKeysWithValues: try VaultRow.all(db).map { ($0.id, $0.name) })
            return try request.fetchAll(db).map(\.server).map { server in
                ServerManifest(
                    server, vault: server.vaultId.flatMap { vaults[$0] }, disks: try DiskRow.of(server: server.id, db))
            }
        }
    }
}
