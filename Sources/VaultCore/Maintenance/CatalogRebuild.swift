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
    }

    /// Builds the catalog of the repository at `path` from its manifests beside the old one,
    /// then puts it in place; an old catalog is kept as `catalog.sqlite.replaced-TIME`.
    /// Refused while a backup or collection runs.
    public static func run(repository path: String, unlock: Unlock = .none) throws -> Report {
        let root = Posix.absolutePath(path)
        let config = try RepositoryConfig.load(from: root)
        let sealer = try unlock.keys(for: config, at: root).map(Sealer.init)
        if let problem = Repository.writeProblem(root) {
            throw VaultError(.readOnly, "cannot rebuild the catalog: the repository \(root) cannot be written: \(problem)")
        }
        let modes = FileModes.of(config)
        let manifests = ManifestStore(root: "\(root)/manifests", modes: modes, sealer: sealer)
        guard Posix.isDirectory(manifests.root) else {
            throw VaultError(.corrupt, "\(root) has no manifests/ folder (a format-1 repository that was never upgraded): its catalog cannot be rebuilt")
        }
        guard let lock = try FileLock.tryLock("\(root)/locks/gc.lock", mode: modes.file) else {
            throw VaultError(.busy, "a backup or garbage collection is running; rebuild the catalog when it ends")
        }
        defer { _ = lock }
        let vaults = try manifests.allVaults()
        let servers = try manifests.allServers()
        let points = try manifests.allPoints()

        let final = "\(root)/catalog.sqlite"
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
