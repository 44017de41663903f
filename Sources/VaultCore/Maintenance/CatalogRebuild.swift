import Foundation
import Glibc

/// `vaultctl repair --rebuild-catalog`: a new catalog made from the manifests alone.
extension CatalogRebuild {
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
                throw VaultError(
                    .corrupt,
                    "\(root) has no manifests/ folder (a format-1 repository that was never upgraded): its catalog cannot be rebuilt"
                )
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
            throw VaultError(
                .readOnly, "cannot rebuild the catalog: the repository \(root) cannot be written: \(problem)")
        }
        guard let lock = try FileLock.tryLock("\(root)/locks/gc.lock", mode: modes.file) else {
            throw VaultError(.busy, "a backup or garbage collection is running; rebuild the catalog when it ends")
        }
        defer { _ = lock }
        return try build(
            at: "\(root)/catalog.sqlite", from: ManifestStore(objects: objects, sealer: sealer), modes: modes)
    }
}
