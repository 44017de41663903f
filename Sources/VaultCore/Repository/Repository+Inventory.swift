import Foundation

/// Vaults, policies and servers: each change is committed in the catalog and then written
/// to its manifest, so the repository alone describes what it holds.
extension Repository {
    @discardableResult
    public func createVault(named name: String, policy: Policy?, now: Date = Date()) throws -> Vault {
        let vault = try catalog.createVault(named: name, policy: policy, now: now)
        try writeVaultManifest(name)
        return vault
    }

    public func setPolicy(_ policy: Policy?, vault name: String) throws {
        try catalog.setPolicy(policy, vault: name)
        try writeVaultManifest(name)
    }

    public func removeVault(named name: String) throws {
        try catalog.removeVault(named: name)
        try? manifests.removeVault(name)
    }

    /// Adds a server; `hooks` are kept in this host's configuration (`hookFiles`), and the
    /// repository records only that they exist.
    @discardableResult
    public func addServer(named name: String, vault: String?, disks: [(name: String, path: String)],
                          hooks: Hooks = Hooks(), hookFiles: HookFiles = .standard, now: Date = Date()) throws -> Server {
        try Names.validateVaultOrServer(name, what: "server")
        try hookFiles.check(hooks)
        try requireWritable("add a server")
        // The catalog first: a server refused (a name given twice, a bad disk, no such vault)
        // leaves no hooks behind, nor replaces another server's.
        let server = try catalog.addServer(named: name, vault: vault, disks: disks, hooks: !hooks.isEmpty, now: now)
        if !hooks.isEmpty {
            do {
                try hookFiles.write(hooks, server: name)
            } catch {
                try? catalog.removeServer(named: name)
                throw error
            }
        }
        try writeServerManifest(name)
        return server
    }

    /// Sets a server's hooks on this host (empty hooks remove them) and records in the
    /// repository whether it has any.
    public func setHooks(_ hooks: Hooks, server name: String, hookFiles: HookFiles = .standard) throws {
        _ = try catalog.server(named: name)
        try requireWritable("change hooks")
        try hookFiles.write(hooks, server: name)
        try catalog.setHooks(!hooks.isEmpty, server: name)
        try writeServerManifest(name)
    }

    public func moveServer(named name: String, toVault vault: String) throws {
        try catalog.moveServer(named: name, toVault: vault)
        try writeServerManifest(name)
    }

    /// Removes a server. Its hooks file stays: hooks are this host's configuration, by server
    /// name, and another repository here may back up a server of that name.
    public func removeServer(named name: String) throws {
        let id = try catalog.server(named: name).id
        try catalog.removeServer(named: name)
        try? manifests.removeServer(name)
        if let id { fingerprints.remove(server: id) }
    }

    func writeVaultManifest(_ name: String) throws {
        for manifest in try catalog.vaultManifests(named: name) { try manifests.write(manifest) }
    }

    func writeServerManifest(_ name: String) throws {
        for manifest in try catalog.serverManifests(named: name) { try manifests.write(manifest) }
    }
}
