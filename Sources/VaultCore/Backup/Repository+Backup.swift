import Foundation

extension Repository {
    public static let defaultVaultName = "default"

    /// Registers a backup: checks the plan, locks the server, opens its disks and records the
    /// point as `creating`. Nothing is stored when this throws. Call `run` on the result.
    /// With `waitForCollection` false, a running garbage collection refuses the backup
    /// (`.busy`) instead of waiting for it: the mount's mkdir never blocks on one.
    public func prepareBackup(
        _ plan: BackupPlan, now: Date = Date(), waitForCollection: Bool = true,
        host: HostServers = .standard
    ) throws -> BackupJob {
        try requireWritable("back up")
        // A long-running process (the mount) records the point in the catalog in place now,
        // not in one `repair --rebuild-catalog` replaced since it opened its own.
        try catalog.followReplacement()
        try Names.validatePointName(plan.name)
        try Names.validateDescription(plan.description)
        var server = try catalog.server(named: plan.server)
        var disks = try catalog.disks(ofServer: server.id)
        // What is read, and run, is this host's: the repository's disks must be the ones this
        // host was given, path for path, or someone who can write the repository could have
        // any file of this host copied into it.
        guard let here = try hostServer(server.name, host: host) else { throw try notSetUp(server.name, host: host) }
        let named = Set(disks.map { HostServer.Disk(name: $0.name, path: $0.path) })
        guard named == Set(here.disks) else {
            func list(_ disks: some Sequence<HostServer.Disk>) -> String {
                disks.sorted { $0.name < $1.name }.map { "\($0.name)=\($0.path)" }.joined(separator: ", ")
            }
            // This host's paths stay out of the message: a refused slot is recorded in the
            // repository, which whoever changed it may read. `server show` compares the two.
            throw VaultError(
                .permissionDenied,
                "the repository says server '\(server.name)' has disks \(list(named)), which are not this host's (\(host.path(server: server.name))): nothing is read. 'vaultctl server show \(server.name)' shows both; if the repository is right (the server was changed elsewhere), 'vaultctl server adopt \(server.name)'"
            )
        }
        // Opened by this host's paths, byte for byte (Swift's == takes canonically equal
        // strings as one).
        let paths = Dictionary(here.disks.map { ($0.name, $0.path) }, uniquingKeysWith: { first, _ in first })
        let hooks = here.hooks
        if server.hooks && hooks.isEmpty {
            // The repository says the server has hooks, and this host has none: backing up
            // without its freeze could store an inconsistent disk.
            throw VaultError(
                .invalidArgument,
                "server '\(server.name)' has freeze/thaw hooks, but this host has none for it in \(host.path(server: server.name)); hooks are host configuration, never read from the repository: set them here with 'vaultctl server hooks \(server.name) --freeze-command CMD --thaw-command CMD', or back up without them after 'vaultctl server hooks \(server.name) --none'"
            )
        }
        if let wanted = plan.disks {
            for name in wanted where !disks.contains(where: { $0.name == name }) {
                throw VaultError.notFound("server '\(server.name)' has no disk named '\(name)'")
            }
            disks = disks.filter { wanted.contains($0.name) }
        }
        guard let serverLock = try lockServer(server.id, name: server.name) else {
            throw VaultError(.busy, "server '\(server.name)' is busy: another backup of it is running")
        }
        let sources = try disks.map {
            try Self.diskOrigin($0.name, path: paths[$0.name] ?? $0.path, server: server.name, here: here)
        }
        if plan.kind == .incremental {
            guard let parentId = plan.parentId, let parent = try catalog.point(id: parentId),
                parent.status == .active, parent.deletion == .none
            else {
                throw VaultError.invalid("an incremental needs an active parent point")
            }
        }
        guard let gcLock = try lockForBackup(wait: waitForCollection) else {
            throw VaultError(.busy, "garbage collection is running; try the backup again when it ends")
        }
        let (vault, enrolment) = try vaultForBackup(&server, now: now)
        let id = UUID().uuidString.lowercased()
        let point = Point(
            id: id, serverId: server.id, serverName: server.name, vaultId: vault.id, vaultName: vault.name,
            name: plan.name, description: plan.description, kind: plan.kind, schedule: plan.schedule,
            status: .creating, error: nil, parentId: plan.kind == .incremental ? plan.parentId : nil,
            chainId: plan.kind == .incremental ? try chainId(of: plan.parentId!) : id,
            slot: plan.slot, startedAt: now, finishedAt: nil, deletion: .none, deletedAt: nil,
            progressDone: 0, progressTotal: 0)
        try register(point, tags: plan.tags)
        return BackupJob(
            point: point, repository: self, server: server, hooks: hooks, sources: sources, serverLock: serverLock,
            collectionLock: gcLock, enrolment: enrolment)
    }

    /// A disk as this host names it, opened for a backup (or for tidying its snapshots): a
    /// Ceph RBD image, a qemu NBD export, or a file or device.
    static func diskOrigin(_ name: String, path: String, server: String, here: HostServer) throws -> any DiskOrigin {
        if let image = try RbdSpec(source: path) {
            return try RbdDisk(name: name, spec: image, access: here.ceph, server: server)
        }
        if let export = try NbdSpec(source: path) {
            return try NbdDisk(name: name, spec: export, bitmap: here.bitmap, server: server)
        }
        return try DiskSource(name: name, path: path, server: server)
    }

    /// The server's vault; a server in no vault is put in the default vault, created with the
    /// default policy when missing (seed 000).
    /// Says so when it does: the scheduler then backs the server up by that policy.
    private func vaultForBackup(_ server: inout Server, now: Date) throws -> (Vault, BackupJob.Enrolment?) {
        if let id = server.vaultId, let vault = try catalog.vault(id: id) { return (vault, nil) }
        let serverId = server.id
        let (vault, created) = try catalog.assignVault(
            named: Self.defaultVaultName, policy: try .makeDefault(since: now), toServer: serverId, now: now)
        server.vaultId = vault.id
        try writeVaultManifest(vault.name)
        try writeServerManifest(server.name)
        return (vault, BackupJob.Enrolment(vault: vault.name, created: created, policy: vault.policy))
    }

    /// Records a new point: its manifest, then the catalog row. A manifest whose point the
    /// catalog refused (a name in use, say) is removed again.
    func register(_ point: Point, tags: [(key: String, value: String)]) throws {
        let manifest = PointManifest(
            point, tags: tags.map { PointTag(pointId: point.id, key: $0.key, value: $0.value) },
            disks: [])
        try manifests.write(manifest)
        do {
            try catalog.insertPoint(point, tags: tags)
        } catch {
            try? manifests.remove(point: point.id)
            throw error
        }
    }

    private func chainId(of parent: String) throws -> String {
        guard let point = try catalog.point(id: parent) else { throw VaultError.notFound("no point \(parent)") }
        return point.chainId
    }

    /// Backs up several servers now under one name (`NAME-0001`, ... when more than one).
    /// Every server is checked and locked before any is read, so a bad name, an unknown
    /// server, a missing disk or a busy server stores nothing at all.
    public func prepareManualBackups(
        servers: [String], name: String?, description: String,
        tags: [(key: String, value: String)], disks: [String]?,
        now: Date = Date()
    ) throws -> [BackupJob] {
        guard !servers.isEmpty else { throw VaultError.invalid("name at least one server to back up") }
        guard Set(servers).count == servers.count else { throw VaultError.invalid("a server is named twice") }
        for server in servers { _ = try catalog.server(named: server) }
        guard name == nil else {
            return try prepareNamedBackups(
                servers: servers, name: name!, description: description, tags: tags, disks: disks, now: now)
        }
        // A generated name that happens to be taken is drawn again, a few times.
        for attempt in 1...8 {
            do {
                return try prepareNamedBackups(
                    servers: servers, name: Names.defaultManualName(), description: description,
                    tags: tags, disks: disks, now: now)
            } catch let error as VaultError where error.code == .alreadyExists && attempt < 8 {
                continue
            }
        }
        throw VaultError(.alreadyExists, "no free manualbk_ name; give one with --name")
    }

    private func prepareNamedBackups(
        servers: [String], name: String, description: String,
        tags: [(key: String, value: String)], disks: [String]?, now: Date
    ) throws -> [BackupJob] {
        let names = try Names.namesForServers(base: name, count: servers.count)
        var jobs: [BackupJob] = []
        do {
            for (server, pointName) in zip(servers, names) {
                jobs.append(
                    try prepareBackup(
                        .manual(
                            server: server, name: pointName, description: description,
                            tags: tags, disks: disks), now: now))
            }
        } catch {
            for job in jobs { discard(job) }
            throw error
        }
        return jobs
    }

    /// Unregisters a prepared job that will not run.
    func discard(_ job: BackupJob) {
        if catalog.discardPoint(job.point.id) { try? manifests.remove(point: job.point.id) }
    }
}
