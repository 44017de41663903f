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

    @discardableResult
    public func addServer(named name: String, vault: String?, disks: [(name: String, path: String)],
                          freezeCommand: String? = nil, thawCommand: String? = nil, now: Date = Date()) throws -> Server {
        let server = try catalog.addServer(named: name, vault: vault, disks: disks, freezeCommand: freezeCommand,
                                           thawCommand: thawCommand, now: now)
        try writeServerManifest(name)
        return server
    }

    public func moveServer(named name: String, toVault vault: String) throws {
        try catalog.moveServer(named: name, toVault: vault)
        try writeServerManifest(name)
    }

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
