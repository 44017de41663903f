import Foundation
import GRDB

/// Vaults, servers and disks.
extension Catalog {
    public func vaults() throws -> [Vault] {
        try read { try Vault.order(Column("name")).fetchAll($0) }
    }

    public func vault(named name: String) throws -> Vault {
        guard let vault = try read({ try Vault.filter(Column("name") == name).fetchOne($0) }) else {
            throw VaultError.notFound("no vault named '\(name)'")
        }
        return vault
    }

    public func vault(id: Int64) throws -> Vault? {
        try read { try Vault.fetchOne($0, key: id) }
    }

    @discardableResult
    func createVault(named name: String, policy: Policy?, now: Date) throws -> Vault {
        try Names.validateVaultOrServer(name, what: "vault")
        try policy?.check()
        return try write { db in
            if try Vault.filter(Column("name") == name).fetchCount(db) > 0 {
                throw VaultError(.alreadyExists, "a vault named '\(name)' already exists")
            }
            var vault = Vault(id: nil, name: name, createdAt: now)
            vault.policy = policy
            try vault.insert(db)
            return vault
        }
    }

    /// Puts a server in the vault named `name`, creating it with `policy` when missing.
    func assignVault(named name: String, policy: Policy, toServer server: Int64, now: Date) throws -> Vault {
        try policy.check()
        return try write { db in
            var vault = try Vault.filter(Column("name") == name).fetchOne(db)
            if vault == nil {
                var created = Vault(id: nil, name: name, createdAt: now)
                created.policy = policy
                try created.insert(db)
                vault = created
            }
            try db.execute(sql: "UPDATE server SET vaultId = ? WHERE id = ?", arguments: [vault!.id, server])
            return vault!
        }
    }

    func setPolicy(_ policy: Policy?, vault name: String) throws {
        try policy?.check()
        try write { db in
            guard var vault = try Vault.filter(Column("name") == name).fetchOne(db) else {
                throw VaultError.notFound("no vault named '\(name)'")
            }
            vault.policy = policy
            try vault.update(db)
        }
    }

    /// Removes an empty vault. A vault that still holds servers or points is refused, so no
    /// stored point loses its place.
    func removeVault(named name: String) throws {
        try write { db in
            guard let vault = try Vault.filter(Column("name") == name).fetchOne(db) else {
                throw VaultError.notFound("no vault named '\(name)'")
            }
            let servers = try Server.filter(Column("vaultId") == vault.id).fetchCount(db)
            if servers > 0 {
                throw VaultError(.notEmpty, "vault '\(name)' still has \(servers) server(s); move or remove them first")
            }
            let points = try Point.filter(Column("vaultId") == vault.id && Column("deletion") != Deletion.deleted.rawValue).fetchCount(db)
            if points > 0 {
                throw VaultError(.notEmpty, "vault '\(name)' still holds \(points) point(s); delete and purge them first")
            }
            try db.execute(sql: "UPDATE point SET vaultId = NULL WHERE vaultId = ?", arguments: [vault.id])
            _ = try vault.delete(db)
        }
    }

    public func servers(inVault vaultId: Int64? = nil) throws -> [Server] {
        try read { db in
            var request = Server.order(Column("name"))
            if let vaultId { request = request.filter(Column("vaultId") == vaultId) }
            return try request.fetchAll(db)
        }
    }

    public func server(named name: String) throws -> Server {
        guard let server = try read({ try Server.filter(Column("name") == name).fetchOne($0) }) else {
            throw VaultError.notFound("no server named '\(name)'")
        }
        return server
    }

    public func disks(ofServer serverId: Int64) throws -> [Disk] {
        try read { try Disk.filter(Column("serverId") == serverId).order(Column("name")).fetchAll($0) }
    }

    @discardableResult
    func addServer(named name: String, vault: String?, disks: [(name: String, path: String)],
                   hooks: Bool, now: Date) throws -> Server {
        try Names.validateVaultOrServer(name, what: "server")
        try Names.validateDisks(disks, server: name)
        return try write { db in
            if try Server.filter(Column("name") == name).fetchCount(db) > 0 {
                throw VaultError(.alreadyExists, "a server named '\(name)' already exists")
            }
            var vaultId: Int64?
            if let vault {
                guard let found = try Vault.filter(Column("name") == vault).fetchOne(db) else {
                    throw VaultError.notFound("no vault named '\(vault)'")
                }
                vaultId = found.id
            }
            var server = Server(id: nil, name: name, vaultId: vaultId, hooks: hooks, createdAt: now)
            try server.insert(db)
            for disk in disks {
                var record = Disk(id: nil, serverId: server.id!, name: disk.name, path: disk.path)
                try record.insert(db)
            }
            return server
        }
    }

    /// Records whether a server has hooks (what they run is host configuration).
    func setHooks(_ hooks: Bool, server name: String) throws {
        try write { db in
            guard var server = try Server.filter(Column("name") == name).fetchOne(db) else {
                throw VaultError.notFound("no server named '\(name)'")
            }
            server.hooks = hooks
            try server.update(db)
        }
    }

    /// Moves a server to another vault; its existing points stay in the vault they were taken in.
    func moveServer(named name: String, toVault vault: String) throws {
        try write { db in
            guard var server = try Server.filter(Column("name") == name).fetchOne(db) else {
                throw VaultError.notFound("no server named '\(name)'")
            }
            guard let target = try Vault.filter(Column("name") == vault).fetchOne(db) else {
                throw VaultError.notFound("no vault named '\(vault)'")
            }
            server.vaultId = target.id
            try server.update(db)
        }
    }

    /// Removes a server that has no stored points left; one with points is refused.
    func removeServer(named name: String) throws {
        try write { db in
            guard let server = try Server.filter(Column("name") == name).fetchOne(db) else {
                throw VaultError.notFound("no server named '\(name)'")
            }
            let points = try Point.filter(Column("serverId") == server.id && Column("deletion") != Deletion.deleted.rawValue).fetchCount(db)
            if points > 0 {
                throw VaultError(.notEmpty, "server '\(name)' still has \(points) point(s); delete and purge them first")
            }
            _ = try server.delete(db)
        }
    }
}

/// Vaults and servers as their manifests describe them.
extension Catalog {
    func vaultManifests(named name: String? = nil) throws -> [VaultManifest] {
        try read { db in
            var request = Vault.order(Column("name"))
            if let name { request = request.filter(Column("name") == name) }
            return try request.fetchAll(db).map { VaultManifest(vault: $0) }
        }
    }

    func serverManifests(named name: String? = nil) throws -> [ServerManifest] {
        try read { db in
            var request = Server.order(Column("name"))
            if let name { request = request.filter(Column("name") == name) }
            let vaults = Dictionary(uniqueKeysWithValues: try Vault.fetchAll(db).map { ($0.id!, $0.name) })
            return try request.fetchAll(db).map { server in
                ServerManifest(server: server, vault: server.vaultId.flatMap { vaults[$0] },
                               disks: try Disk.filter(Column("serverId") == server.id).order(Column("name")).fetchAll(db))
            }
        }
    }
}
