import Foundation
import Logging

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
        tidy(
            "vault '\(name)' is removed, but its manifest is left (a rebuild or another host would bring it back); remove manifests/vaults/\(name).json"
        ) {
            try manifests.removeVault(name)
        }
    }

    /// Adds a server. Its disks and `hooks` are kept in this host's configuration (`host`),
    /// which backups read from; the repository records the disks, and only that hooks exist.
    @discardableResult
    public func addServer(
        named name: String, vault: String?, disks: [(name: String, path: String)],
        hooks: Hooks = Hooks(), host: HostServers = .standard, now: Date = Date()
    ) throws -> Server {
        try Names.validateVaultOrServer(name, what: "server")
        let here = HostServer(disks: disks.map { HostServer.Disk(name: $0.name, path: $0.path) }, hooks: hooks)
        try host.check(hooks)
        try requireWritable("add a server")
        // The catalog first: a server refused (a name given twice, a bad disk, no such vault)
        // leaves no file behind, nor replaces another server's.
        let server = try catalog.addServer(named: name, vault: vault, disks: disks, hooks: !hooks.isEmpty, now: now)
        do {
            try host.write(here, server: name)
        } catch {
            try? catalog.removeServer(named: name)
            throw error
        }
        try writeServerManifest(name)
        return server
    }

    /// Sets a server's hooks on this host (empty hooks remove them) and records in the
    /// repository whether it has any. The server must be set up here.
    public func setHooks(_ hooks: Hooks, server name: String, host: HostServers = .standard) throws {
        _ = try catalog.server(named: name)
        try requireWritable("change hooks")
        guard var here = try host.server(name) else { throw notSetUp(name, host: host) }
        here.hooks = hooks
        try host.write(here, server: name)
        try catalog.setHooks(!hooks.isEmpty, server: name)
        try writeServerManifest(name)
    }

    /// Sets a server up on this host with the disks the repository names (a server added on
    /// another host, or before disks were host configuration), keeping any hooks it has here.
    /// Returns the disks this host will read.
    @discardableResult
    public func adoptServer(named name: String, host: HostServers = .standard) throws -> [HostServer.Disk] {
        let server = try catalog.server(named: name)
        let disks = try catalog.disks(ofServer: server.id).map { HostServer.Disk(name: $0.name, path: $0.path) }
        let hooks = try host.server(name)?.hooks ?? Hooks()
        try host.write(HostServer(disks: disks, hooks: hooks), server: name)
        return disks
    }

    /// The refusal of a backup, or a change, of a server this host has not set up.
    func notSetUp(_ name: String, host: HostServers) -> VaultError {
        VaultError(
            .permissionDenied,
            "server '\(name)' is not set up on this host (\(host.path(server: name))): a host reads only the disks it was given, never paths from the repository; check its disks with 'vaultctl server show \(name)', then 'vaultctl server adopt \(name)'"
        )
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
        tidy(
            "server '\(name)' is removed, but its manifest is left (a rebuild or another host would bring it back); remove manifests/servers/\(name).json"
        ) {
            try manifests.removeServer(name)
        }
        fingerprints.remove(server: id)
    }

    func writeVaultManifest(_ name: String) throws {
        for manifest in try catalog.vaultManifests(named: name) { try manifests.write(manifest) }
    }

    func writeServerManifest(_ name: String) throws {
        for manifest in try catalog.serverManifests(named: name) { try manifests.write(manifest) }
    }
}

extension Repository {
    /// Runs `body`, which tidies up after a change already made; when it fails, the log says
    /// what is left and why, instead of failing the change that was made or keeping silent.
    func tidy(_ what: String, _ body: () throws -> Void) {
        do { try body() } catch { Logger(label: "vaultfs.repository").warning("\(what): \(error)") }
    }
}
