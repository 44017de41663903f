import Foundation
import Glibc
import Logging
import Synchronization

/// One backup location: configuration, catalog, and in its object store the chunks, chunk
/// maps and manifests.
public final class Repository: Sendable {
    /// The local folder: the catalog, locks and reader leases (and, for a repository in a
    /// folder, its objects too).
    public let root: String
    /// Where chunks, maps and manifests are.
    public let objects: any ObjectStore
    public let config: RepositoryConfig
    public let catalog: Catalog
    public let chunks: ChunkStore
    public let maps: MapStore
    let manifests: ManifestStore
    let modes: FileModes

    /// Why nothing can be written here, or nil when the repository is writable.
    public var readOnlyReason: String? { catalog.readOnlyReason }

    /// Where it is: a folder, or a bucket and a state folder.
    public let location: RepositoryLocation
    /// Whether other hosts may write the same store (a bucket): then backups and collections
    /// coordinate through leases, and backups keep a local index of its chunks.
    public var isShared: Bool { objects.isShared }
    /// Seconds an unused chunk stays marked before a collection removes it: the repository's
    /// setting, else none in a folder (one host, exact locks) and a day in a shared store.
    public var gcGrace: TimeInterval { config.gcGraceSeconds ?? (isShared ? 86400 : 0) }
    /// When the catalog last took in what other hosts wrote, and whether that is running.
    private let refreshed = Mutex<(at: Date, running: Bool)>((Date(), false))

    /// Opens an existing repository (a path or an `s3://` URL, see `RepositoryLocation`) and
    /// settles backups whose process died. A repository that cannot be written is opened
    /// read-only: every reading command still works. `unlock` gives the key of an encrypted
    /// repository; a wrong one is refused before anything is read or written.
    public convenience init(path: String, unlock: Unlock = .none) throws {
        try self.init(location: try RepositoryLocation.parse(path), unlock: unlock)
    }

    /// Opens the repository at `location`. `diskCache` keeps the chunks read from a bucket in
    /// a local folder too (for the mount); a repository in a folder refuses one.
    public init(location: RepositoryLocation, unlock: Unlock = .none, diskCache: DiskCacheSettings? = nil) throws {
        self.location = location
        root = location.root
        var config: RepositoryConfig
        let directory: DirectoryStore?
        var index: ChunkIndex?
        switch location {
        case .directory(let root):
            config = try RepositoryConfig.load(from: root)
            for folder in ["chunks", "maps", "locks"] where !Posix.isDirectory("\(root)/\(folder)") {
                throw VaultError(.corrupt, "\(root) is damaged: its \(folder)/ folder is missing")
            }
            if diskCache != nil {
                throw VaultError.invalid(
                    "cache_dir= is for s3:// repositories: the chunks of \(root) are on a local disk already")
            }
            modes = FileModes.of(config)
            directory = DirectoryStore(root: root, modes: modes)
            objects = directory!
        case .s3(let s3, let state):
            let store = try S3Store(s3)
            config = try RepositoryConfig.load(from: store)
            modes = .ownerOnly
            try Self.prepareState(state, repository: config.id)
            directory = nil
            objects = try diskCache.map { try DiskCachedStore(store, settings: $0) } ?? store
            index = ChunkIndex(path: "\(state)/chunks.index", store: "\(location.name) \(config.storeId ?? "")")
        }
        let sealer = try unlock.keys(for: config, at: location.name).map(Sealer.init)
        chunks = ChunkStore(objects: objects, sealer: sealer, index: index)
        maps = MapStore(objects: objects, sealer: sealer)
        manifests = ManifestStore(objects: objects, sealer: sealer)
        let catalogPath = "\(root)/catalog.sqlite"
        if directory == nil && !Posix.exists(catalogPath) {
            // A host that has not seen this bucket: the index comes from the manifests.
            _ = try CatalogRebuild.build(at: catalogPath, from: manifests, modes: modes)
        }
        catalog = try Catalog(path: catalogPath, readOnlyReason: Self.writeProblem(root))
        if let directory {
            if catalog.readOnlyReason == nil && config.format < RepositoryConfig.currentFormat {
                try Self.upgrade(directory, config: &config, catalog: catalog, manifests: manifests)
            }
            if config.format >= 2 && !Posix.isDirectory(directory.path("manifests")) {
                throw VaultError(.corrupt, "\(root) is damaged: its manifests/ folder is missing")
            }
        }
        self.config = config
        if directory == nil && catalog.readOnlyReason == nil { try refreshFromStore() }
        recoverInterrupted()
    }

    /// For a repository in an object store that other hosts share: merges what they wrote
    /// since this host last looked (new vaults, servers and points, points they finished or
    /// deleted) into the catalog. One listing of the manifests, and a read of each new or
    /// changed one. Returns how many records changed.
    @discardableResult
    public func refreshFromStore() throws -> Int {
        guard isShared, readOnlyReason == nil else { return 0 }
        let file = "\(root)/manifests.seen"
        let seen =
            (try? JSONDecoder().decode([String: String].self, from: Data(Posix.readFile(file, limit: 256 << 20))))
            ?? [:]
        let found = try manifests.changed(since: seen)
        let merged = try catalog.merge(vaults: found.vaults, servers: found.servers, points: found.points)
        var tags = found.tags
        for id in merged.skipped {
            tags["\(ManifestStore.prefix)points/\(id).json"] = nil
            Logger(label: "vaultfs.repository").warning(
                "point \(id) of another host is not shown yet: its parent is unknown here, or its name is in use")
        }
        try Posix.writeFileAtomically(file, Array(try JSONEncoder().encode(tags)), mode: 0o600, sync: false)
        return merged.changed
    }

    /// Starts `refreshFromStore` on another thread when the last one is `interval` seconds
    /// old and none is running: the mount calls it as it reads the catalog, and never waits.
    public func refreshFromStoreInBackground(every interval: TimeInterval) {
        guard isShared else { return }
        let due = refreshed.withLock { state -> Bool in
            guard !state.running, Date().timeIntervalSince(state.at) >= interval else { return false }
            state.running = true
            return true
        }
        guard due else { return }
        DispatchQueue.global().async { [self] in
            do {
                try refreshFromStore()
                recoverInterrupted()
            } catch {
                Logger(label: "vaultfs.repository").error("cannot refresh from \(location.name): \(error)")
            }
            refreshed.withLock { $0 = (Date(), false) }
        }
    }

    /// The local state folder of an S3 repository, made owner-only when missing. It belongs
    /// to one repository (its id is kept in it): another one's is refused.
    static func prepareState(_ state: String, repository id: String) throws {
        var folder = ""
        for part in state.split(separator: "/") {
            folder += "/\(part)"
            if !Posix.isDirectory(folder) { try Posix.makeDirectory(folder, mode: 0o700) }
        }
        try Posix.makeDirectory("\(state)/locks", mode: 0o700)
        let file = "\(state)/repository-id"
        if let bytes = try? Posix.readFile(file, limit: 100) {
            guard String(decoding: bytes, as: UTF8.self) == id else {
                throw VaultError.invalid(
                    "the state folder \(state) belongs to another repository; give this one its own with --state-dir (or -o state_dir=)"
                )
            }
        } else {
            try Posix.writeFileAtomically(file, Array(id.utf8), mode: 0o600)
        }
    }

    /// Creates a new, empty repository at `path` (an empty or missing directory, or an
    /// `s3://` URL). See `create(at location:…)`.
    @discardableResult
    public static func create(
        at path: String, chunkSize: Int, compressionLevel: Int, group: String? = nil,
        encryption: Encryption = .none, gcGrace: TimeInterval? = nil
    ) throws -> Repository {
        try create(
            at: try RepositoryLocation.parse(path), chunkSize: chunkSize, compressionLevel: compressionLevel,
            group: group, encryption: encryption, gcGrace: gcGrace)
    }

    /// Creates a new, empty repository: in a folder (empty or missing), everything owner-only,
    /// or readable by `group` when one is given; in a bucket (made when missing) under a
    /// prefix that holds nothing yet, with a new state folder. `encryption` makes it
    /// encrypted, its key wrapped by a passphrase or written to a key file outside the
    /// repository. `gcGrace` is how long unused chunks wait before collection removes them
    /// (nil for the default).
    @discardableResult
    public static func create(
        at location: RepositoryLocation, chunkSize: Int, compressionLevel: Int, group: String? = nil,
        encryption: Encryption = .none, gcGrace: TimeInterval? = nil
    ) throws -> Repository {
        var config = try RepositoryConfig(chunkSize: chunkSize, compressionLevel: compressionLevel, group: group)
        if let gcGrace {
            guard gcGrace >= 0, gcGrace <= 366 * 86400 else {
                throw VaultError.invalid("a grace period must be from 0 to 366 days")
            }
            config.gcGraceSeconds = gcGrace
        }
        let gid = try group.map(FileModes.groupId)
        if group != nil, case .s3 = location {
            throw VaultError.invalid(
                "--group applies to a repository in a folder; an S3 repository's access is the bucket's")
        }
        let keys = encryption == .none ? nil : RepositoryKeys.random()
        var unlock = Unlock.none
        if let keys {
            config.encryption = RepositoryConfig.cipher
            config.keyCheck = keys.check(repository: config.id)
            switch encryption {
            case .passphrase(let passphrase):
                guard !passphrase.isEmpty else {
                    throw VaultError.invalid("an empty passphrase protects nothing; give one")
                }
                config.key = try WrappedKey.wrap(keys, passphrase: passphrase, repository: config.id)
                unlock = .passphrase { passphrase }
            case .keyFile(let file):
                if Posix.exists(file) {
                    throw VaultError(.alreadyExists, "\(file) already exists; give a new file for the key")
                }
                unlock = .keyFile(file)
            case .none:
                break
            }
        }
        try lay(config, at: location, gid: gid) {
            if let keys, case .keyFile(let file) = encryption {
                try KeyFile.write(keys, repository: config.id, to: file)
            }
        }
        return try Repository(location: location, unlock: unlock)
    }

    /// Makes an empty repository at `location` that is `config`'s mirror: the same id, chunk
    /// size, encryption and key (`vaultctl sync` fills it). Not in a group.
    static func createMirror(of config: RepositoryConfig, at location: RepositoryLocation) throws {
        var config = config
        config.group = nil
        try lay(config, at: location, gid: nil) {}
    }

    /// Lays out an empty repository described by `config` at `location` (refused unless that
    /// holds nothing); `beforeConfig` runs just before `repository.json`, written last, makes
    /// it a repository.
    private static func lay(
        _ config: RepositoryConfig, at location: RepositoryLocation, gid: gid_t?,
        beforeConfig: () throws -> Void
    ) throws {
        var config = config
        config.storeId = UUID().uuidString.lowercased()
        switch location {
        case .directory(let root):
            if Posix.exists("\(root)/\(RepositoryConfig.fileName)") {
                throw VaultError(.alreadyExists, "\(root) is already a vaultfs repository")
            }
            if Posix.isDirectory(root), !Posix.listDirectory(root).isEmpty {
                throw VaultError(.notEmpty, "\(root) is not empty; give an empty or new directory")
            }
            let modes = FileModes.of(config)
            try Posix.makeDirectory(root, mode: modes.directory)
            if let gid {
                // Folders carry the setgid bit, so everything made below inherits the group.
                guard chown(root, uid_t.max, gid) == 0, chmod(root, modes.directory) == 0 else {
                    throw Posix.error("cannot give the group '\(config.group ?? "")'", root)
                }
            } else if chmod(root, modes.directory) != 0 {
                throw Posix.error("cannot set the mode of", root)
            }
            let directory = DirectoryStore(root: root, modes: modes)
            try ChunkStore.prepare(directory)
            try Posix.makeDirectory("\(root)/maps", mode: modes.directory)
            try Posix.makeDirectory("\(root)/locks", mode: modes.directory)
            try ManifestStore.prepare(directory)
            _ = try Catalog.create(at: "\(root)/catalog.sqlite", mode: modes.file)
            try beforeConfig()
            try config.save(to: directory)
        case .s3(let s3, let state):
            let store = try S3Store(s3)
            try store.createBucket()
            if try store.exists(RepositoryConfig.fileName) {
                throw VaultError(.alreadyExists, "\(location.name) is already a vaultfs repository")
            }
            if let first = try store.list(prefix: "").first {
                throw VaultError(.notEmpty, "\(location.name) is not empty (it holds \(first.key)); give a new prefix")
            }
            if Posix.isDirectory(state), !Posix.listDirectory(state).isEmpty {
                throw VaultError(.notEmpty, "the state folder \(state) is not empty; give a new one with --state-dir")
            }
            try prepareState(state, repository: config.id)
            _ = try Catalog.create(at: "\(state)/catalog.sqlite", mode: 0o600)
            try beforeConfig()
            // Written last and only if absent: of two hosts that init one prefix, one wins.
            guard try store.putIfAbsent(RepositoryConfig.fileName, try config.encoded()) else {
                throw VaultError(.alreadyExists, "\(location.name) is already a vaultfs repository")
            }
        }
    }

    /// How `create` protects a new repository.
    public enum Encryption: Equatable, Sendable {
        case none
        /// AES-256-GCM, the key wrapped by this passphrase in `repository.json`.
        case passphrase(String)
        /// AES-256-GCM, the key written to this new file and kept nowhere else.
        case keyFile(String)
    }

    /// Why the repository at `root` cannot be written, or nil when it can.
    static func writeProblem(_ root: String) -> String? {
        var sv = statvfs()
        if statvfs(root, &sv) == 0 && sv.f_flag & UInt(ST_RDONLY) != 0 { return "it is on read-only media" }
        if access(root, W_OK) != 0 { return "you may not write to it (\(Posix.message(errno)))" }
        return nil
    }

    /// Throws, saying why, when the repository cannot be written; `what` names the command.
    public func requireWritable(_ what: String) throws {
        if let readOnlyReason {
            throw VaultError(.readOnly, "cannot \(what): the repository \(root) cannot be written: \(readOnlyReason)")
        }
    }

    /// Brings an older repository to the current format: for format 1, manifests for
    /// everything the catalog knows and owner-only folders. Stored chunks are not rewritten.
    private static func upgrade(
        _ directory: DirectoryStore, config: inout RepositoryConfig, catalog: Catalog,
        manifests: ManifestStore
    ) throws {
        let root = directory.root
        let modes = directory.modes
        let lock = try FileLock.lock("\(root)/locks/upgrade.lock", shared: false, mode: modes.file)
        defer { _ = lock }
        if let current = try? RepositoryConfig.load(from: directory), current.format >= RepositoryConfig.currentFormat {
            config = current
            return
        }
        if config.format < 2 {
            try ManifestStore.prepare(directory)
            for manifest in try catalog.allPointManifests() { try manifests.write(manifest) }
            for vault in try catalog.vaultManifests() { try manifests.write(vault) }
            for server in try catalog.serverManifests() { try manifests.write(server) }
            if chmod(root, modes.directory) != 0 { throw Posix.error("cannot set the mode of", root) }
        }
        config.format = RepositoryConfig.currentFormat
        try config.save(to: directory)
    }

    /// Locks one server for a backup; nil when another backup of it runs on this host. In an
    /// object store other hosts may share, a lease every host honours is taken too; one that
    /// another host holds is `.busy`, naming it.
    func lockServer(_ id: Int64, name: String) throws -> StoreLock? {
        guard let file = try FileLock.tryLock("\(root)/locks/server-\(id).lock", mode: modes.file) else { return nil }
        guard isShared else { return StoreLock(file: file, lease: nil) }
        var holder: String?
        guard let lease = try ObjectLease.acquire(objects, name: "servers/\(name)", host: try hostId(), holder: &holder)
        else {
            throw VaultError(
                .busy, "server '\(name)' is busy: a backup of it is running on \(holder ?? "another host")")
        }
        return StoreLock(file: file, lease: lease)
    }

    /// This host's id among those sharing an object store: made once in the state folder.
    func hostId() throws -> String {
        let file = "\(root)/host-id"
        if let bytes = try? Posix.readFile(file, limit: 100), let id = String(bytes: bytes, encoding: .utf8),
            UUID(uuidString: id) != nil
        {
            return id
        }
        // Made under another name and linked into place: of two processes making it at once,
        // both end up with the one that was linked first.
        let temporary = Posix.temporaryName(for: file)
        try Posix.writeFileAtomically(temporary, Array(UUID().uuidString.lowercased().utf8), mode: 0o600)
        defer { unlink(temporary) }
        if link(temporary, file) != 0 && errno != EEXIST { throw Posix.error("cannot create", file) }
        guard let bytes = try? Posix.readFile(file, limit: 100), let id = String(bytes: bytes, encoding: .utf8) else {
            throw VaultError(.corrupt, "\(file) is damaged; remove it and try again")
        }
        return id
    }

    /// Held (shared) by every backup; garbage collection takes it exclusively, so it never
    /// removes chunks a running backup has written but not yet recorded in a map. With
    /// `wait` false, nil when a collection is running.
    ///
    /// In an object store other hosts share, a collection also holds the lease `gc`, and a
    /// backup (which takes its server's lease first) waits while one is live; a collection
    /// that finds any server's lease live does not run. Whichever of the two writes its lease
    /// second sees the other's, so a collection never sweeps while a backup on any host may
    /// be storing or reusing chunks.
    func lockForBackup(wait: Bool = true) throws -> FileLock? {
        guard
            let file = wait
                ? try FileLock.lock("\(root)/locks/gc.lock", shared: true, mode: modes.file)
                : try FileLock.tryLock("\(root)/locks/gc.lock", shared: true, mode: modes.file)
        else { return nil }
        guard isShared else { return file }
        while let holder = try ObjectLease.holder(objects, name: "gc", host: try hostId()) {
            guard wait else {
                throw VaultError(.busy, "garbage collection is running on \(holder); try the backup again when it ends")
            }
            usleep(2_000_000)
        }
        // Collections on other hosts may have removed chunks this host's index names.
        try chunks.index?.catchUp(objects, chunks: chunks)
        return file
    }

    /// The collection's locks, or nil when a backup runs (here or, in a shared object store,
    /// on any host) or another collection does.
    func tryLockForCollection() throws -> StoreLock? {
        guard let file = try FileLock.tryLock("\(root)/locks/gc.lock", mode: modes.file) else { return nil }
        guard isShared else { return StoreLock(file: file, lease: nil) }
        var holder: String?
        guard let lease = try ObjectLease.acquire(objects, name: "gc", host: try hostId(), holder: &holder) else {
            return nil
        }
        if try !ObjectLease.liveHolders(objects, under: "servers/", host: try hostId()).isEmpty {
            lease.release()
            return nil
        }
        return StoreLock(file: file, lease: lease)
    }

    /// Settles `creating` points whose server lock is free (their process died): one whose
    /// manifest already says active had finished writing and is committed; any other fails.
    public func recoverInterrupted() {
        guard readOnlyReason == nil,
            let creating = try? catalog.pointsBeingMade()
        else { return }
        for point in creating {
            guard let serverId = point.serverId, let lock = try? lockServer(serverId, name: point.serverName) else {
                continue
            }
            defer { _ = lock }
            // In an object store, a failure to read is no proof the backup died unfinished
            // (another host may have finished it): such a point is left for a later look.
            var manifest: PointManifest?
            var whole = false
            do {
                manifest = try manifests.point(point.id)
                whole = try manifest.map(mapsAreWhole) ?? false
            } catch let error as VaultError where isShared && error.code != .corrupt {
                continue
            } catch {
                manifest = nil
            }
            if let manifest, manifest.isLive, whole {
                if (try? catalog.rollForward(manifest)) == true { continue }
            }
            do {
                try failPoint(
                    point.id, error: "interrupted: the process making this backup ended before it finished", at: Date(),
                    retrySlot: true)
            } catch {
                Logger(label: "vaultfs.repository").warning(
                    "cannot record interrupted point \(point.id) as failed: \(error); the next opener tries again")
            }
        }
    }

    /// Whether every map a manifest names is there and decodes; throws when one could not
    /// be read at all (the store did not answer).
    private func mapsAreWhole(_ manifest: PointManifest) throws -> Bool {
        for disk in manifest.disks {
            do {
                _ = try maps.read(point: manifest.point.id, disk: disk.disk)
            } catch let error as VaultError where error.code == .corrupt {
                return false
            }
        }
        return true
    }

    /// Marks a `creating` point failed, manifest first; false when it was not creating. The
    /// catalog is changed even when the manifest cannot be written (the store is away), and
    /// then the manifest's error is thrown: a failure to record a failure is never silent.
    @discardableResult
    func failPoint(_ id: String, error: String, at time: Date, retrySlot: Bool = false) throws -> Bool {
        var manifestError: (any Error)?
        do {
            if var manifest = try catalog.manifest(ofPoint: id), manifest.point.status == .creating {
                manifest.point.status = .failed
                manifest.point.error = error
                manifest.point.finishedAt = time
                try manifests.write(manifest)
            }
        } catch {
            manifestError = error
        }
        let failed = try catalog.failPoint(id, error: error, at: time, retrySlot: retrySlot)
        if !failed { try syncManifest(of: id) }
        if let manifestError { throw manifestError }
        return failed
    }

    /// Rewrites a point's manifest from the catalog, after a change the catalog refused.
    func syncManifest(of id: String) throws {
        if let manifest = try catalog.manifest(ofPoint: id) { try manifests.write(manifest) }
    }

    /// Flushes written chunks, maps and manifests to stable storage before the catalog says
    /// they exist.
    func syncData() throws { try objects.flush() }
}
