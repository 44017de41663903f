import Foundation
import Glibc

/// A catalog made from a repository's manifests alone: by `vaultctl repair
/// --rebuild-catalog`, and by a host opening a shared bucket it has not seen.
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
        var report = Report(
            vaults: vaults.count, servers: servers.count, points: points.count,
            restorable: points.filter(\.isLive).count)
        report.unaccounted = unaccounted
        if Posix.exists(final) {
            let aside = "\(final).replaced-\(Units.compactUTC(Date()))"
            for suffix in ["", "-wal", "-shm"] where Posix.exists(final + suffix) {
                guard rename(final + suffix, aside + suffix) == 0 else {
                    throw Posix.error("cannot move aside", final + suffix)
                }
            }
            report.previousCatalog = aside
        } else {
            for suffix in ["-wal", "-shm"] { unlink(final + suffix) }
        }
        for suffix in ["-wal", "-shm"] where Posix.exists(fresh + suffix) {
            guard rename(fresh + suffix, final + suffix) == 0 else {
                throw Posix.error("cannot put in place", fresh + suffix)
            }
        }
        guard rename(fresh, final) == 0 else { throw Posix.error("cannot put the rebuilt catalog in place", fresh) }
        return report
    }
}
