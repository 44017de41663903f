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

    /// Adds a server. Its disks, `hooks` and how to reach the Ceph cluster of its `rbd:` disks
    /// are kept in this host's configuration (`host`), which backups read from; the repository
    /// records the disks, and only that hooks exist.
    @discardableResult
    public func addServer(
        named name: String, vault: String?, disks: [(name: String, path: String)],
        hooks: Hooks = Hooks(), ceph: CephAccess = CephAccess(), bitmap: DirtyBitmap? = nil,
        host: HostServers = .standard, now: Date = Date()
    ) throws -> Server {
        try Names.validateVaultOrServer(name, what: "server")
        let here = HostServer(
            disks: disks.map { HostServer.Disk(name: $0.name, path: $0.path) }, hooks: hooks, ceph: ceph,
            bitmap: bitmap, repository: config.id, location: location.hostName)
        try host.check(hooks)
        try ceph.check()
        try bitmap?.check()
        try requireWritable("add a server")
        let previous = try host.server(name)
        // The catalog first: a server refused (a name given twice, a bad disk, no such vault)
        // leaves no file behind, nor replaces another server's.
        let server = try catalog.addServer(named: name, vault: vault, disks: disks, hooks: !hooks.isEmpty, now: now)
        do {
            try host.write(here, server: name)
        } catch {
            try? catalog.removeServer(named: name)
            throw error
        }
        warnIfTakenOver(name, from: previous, host: host)
        try writeServerManifest(name)
        return server
    }

    /// Sets a server's hooks on this host (empty hooks remove them) and records in the
    /// repository whether it has any. The server must be set up here.
    public func setHooks(_ hooks: Hooks, server name: String, host: HostServers = .standard) throws {
        _ = try catalog.server(named: name)
        try requireWritable("change hooks")
        guard var here = try hostServer(name, host: host) else { throw try notSetUp(name, host: host) }
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
        let previous = try host.server(name)
        // Hooks stay only when the file was this repository's, or an older one's that named
        // none, or named this id before files named a location too.
        let kept = previous.flatMap { isThisRepository($0) || isOlderFile($0) ? $0 : nil }
        try host.write(
            HostServer(
                disks: disks, hooks: kept?.hooks ?? Hooks(), ceph: kept?.ceph ?? CephAccess(), bitmap: kept?.bitmap,
                repository: config.id, location: location.hostName), server: name)
        warnIfTakenOver(name, from: previous, host: host)
        return disks
    }

    /// `name` as this host backs it up into this repository: nil when this host has no file
    /// for it, or when its file is for another repository (or, written before files named
    /// one, for none).
    func hostServer(_ name: String, host: HostServers) throws -> HostServer? {
        guard let here = try host.server(name), isThisRepository(here) else { return nil }
        return here
    }

    /// Whether a server file was written by an older vaultctl for this repository, or for
    /// none: it names no repository, or this id and no location.
    private func isOlderFile(_ here: HostServer) -> Bool {
        here.repository == nil || here.repository == config.id && here.location == nil
    }

    /// Whether a server file names this repository: its id and where this host finds it.
    /// The id alone would not do, as another repository's writer can copy it.
    private func isThisRepository(_ here: HostServer) -> Bool {
        here.repository == config.id && here.location == location.hostName
    }

    /// `name`'s hooks on this host when its file is this repository's; nil otherwise.
    public func hostHooks(_ name: String, host: HostServers = .standard) throws -> Hooks? {
        try hostServer(name, host: host).flatMap { $0.hooks.isEmpty ? nil : $0.hooks }
    }

    /// Says in the log that a server file of another repository on this host was replaced:
    /// `server add` and `server adopt` are this host's administrator's to run, and the newest
    /// wins; that repository's server of the same name is no longer backed up here.
    private func warnIfTakenOver(_ name: String, from previous: HostServer?, host: HostServers) {
        guard let previous, let other = previous.repository, !isThisRepository(previous), !isOlderFile(previous) else {
            return
        }
        Logger(label: "vaultfs.repository").warning(
            "server '\(name)' on this host was backed up into repository \(other) at \(previous.location ?? "an unrecorded location"); \(host.path(server: name)) now names this one (\(config.id) at \(location.hostName)), and that one's '\(name)' is no longer backed up here"
        )
    }

    /// The refusal of a backup, or a change, of a server this host has not set up for this
    /// repository.
    func notSetUp(_ name: String, host: HostServers) throws -> VaultError {
        let file = host.path(server: name)
        if let here = try host.server(name) {
            // The other repository's id stays out: a refusal may be recorded in this one,
            // which whoever wrote it may read.
            if here.repository != nil && here.location != nil {
                return VaultError(
                    .permissionDenied,
                    "server '\(name)' on this host (\(file)) is backed up into another repository, not this one: it is not read for this repository; 'vaultctl server adopt \(name)' moves it here"
                )
            }
            return VaultError(
                .permissionDenied,
                "server '\(name)' on this host (\(file)) does not name both a repository and its location (it was set up by an older vaultctl): check its disks with 'vaultctl server show \(name)', then 'vaultctl server adopt \(name)'"
            )
        }
        return VaultError(
            .permissionDenied,
            "server '\(name)' is not set up on this host (\(file)): a host reads only the disks it was given, never paths from the repository; check its disks with 'vaultctl server show \(name)', then 'vaultctl server adopt \(name)'"
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
