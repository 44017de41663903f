import Foundation
import Glibc

/// `vaultctl repair --rebuild-catalog`: a new catalog made from the manifests alone.
public enum CatalogRebuild {
    public struct Report: Sendable, Codable {
        public var vaults = 0
        public var servers = 0
        public var points = 0
        public var restorable = 0
        /// Where the catalog that was replaced now is, when there was one.
        public var previousCatalog: String?
        /// Points that have chunk maps in the repository but no manifest: the rebuild cannot
        /// bring them back, and says so.
        public var unaccounted: [String] = []
    }

    /// Builds the catalog of the repository at `path` (a folder or an `s3://` URL) from its
    /// manifests beside the old one, then puts it in place; an old catalog is kept as
    /// `catalog.sqlite.replaced-TIME`. Refused while a backup or collection runs.
    public static func run(repository path: String, unlock: Unlock = .none) throws -> Report {
        try run(location: try RepositoryLocation.parse(path), unlock: unlock)
    }

    public static func run(location: RepositoryLocation, unlock: Unlock = .none) throws -> Report {
        let root = location.root
        let objects: any ObjectStore
        let modes: FileModes
        switch location {
        case .directory:
            let config = try RepositoryConfig.load(from: root)
            modes = FileModes.of(config)
            guard Posix.isDirectory("\(root)/manifests") else {
                throw VaultError(.corrupt, "\(root) has no manifests/ folder (a format-1 repository that was never upgraded): its catalog cannot be rebuilt")
            }
            objects = DirectoryStore(root: root, modes: modes)
        case .s3(let s3, _):
            objects = try S3Store(s3)
            modes = .ownerOnly
        }
        let config = try RepositoryConfig.load(from: objects)
        if case .s3(_, let state) = location { try Repository.prepareState(state, repository: config.id) }
        let sealer = try unlock.keys(for: config, at: location.name).map(Sealer.init)
        if let problem = Repository.writeProblem(root) {
            throw VaultError(.readOnly, "cannot rebuild the catalog: the repository \(root) cannot be written: \(problem)")
        }
        guard let lock = try FileLock.tryLock("\(root)/locks/gc.lock", mode: modes.file) else {
            throw VaultError(.busy, "a backup or garbage collection is running; rebuild the catalog when it ends")
        }
        defer { _ = lock }
        return try build(at: "\(root)/catalog.sqlite", from: ManifestStore(objects: objects, sealer: sealer), modes: modes)
    }

    /// Makes the catalog at `final` from `manifests` (beside it first, then renamed into
    /// place); one that was there is kept as `catalog.sqlite.replaced-TIME`.
    static func build(at final: String, from manifests: ManifestStore, modes: FileModes) throws -> Report {
        let vaults = try manifests.allVaults()
        let servers = try manifests.allServers()
        let points = try manifests.allPoints()

        // Listed before anything is written: a store that fails here leaves nothing behind.
        let unaccounted = try MapStore(objects: manifests.objects, sealer: manifests.sealer).points()
            .subtracting(points.map(\.point.id)).sorted()
        let fresh = "\(final).rebuild-\(getpid())"
        for suffix in ["", "-wal", "-shm"] { unlink(fresh + suffix) }
        do {
            // Foreign keys are off while filling: a chain whose parent manifest is lost still
            // comes back, and verify names it.
            close(try Posix.createFile(fresh, mode: modes.file, what: "cannot create the catalog"))
            let catalog = try Catalog(path: fresh, readOnlyReason: nil, foreignKeys: false)
            try catalog.restore(vaults: vaults, servers: servers, points: points)
        } catch {
            for suffix in ["", "-wal", "-shm"] { unlink(fresh + suffix) }
            throw error
        }
        var report = Report(vaults: vaults.count, servers: servers.count, points: points.count,
                            restorable: points.filter(\.isLive).count)
        report.unaccounted = unaccounted
        if Posix.exists(final) {
            let aside = "\(final).replaced-\(Units.compactUTC(Date()))"
            for suffix in ["", "-wal", "-shm"] where Posix.exists(final + suffix) {
                guard rename(final + suffix, aside + suffix) == 0 else { throw Posix.error("cannot move aside", final + suffix) }
            }
            report.previousCatalog = aside
        } else {
            for suffix in ["-wal", "-shm"] { unlink(final + suffix) }
        }
        for suffix in ["-wal", "-shm"] where Posix.exists(fresh + suffix) {
            guard rename(fresh + suffix, final + suffix) == 0 else { throw Posix.error("cannot put in place", fresh + suffix) }
        }
        guard rename(fresh, final) == 0 else { throw Posix.error("cannot put the rebuilt catalog in place", fresh) }
        return report
    }
}
