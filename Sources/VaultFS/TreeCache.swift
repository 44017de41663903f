import Foundation
import Logging
import Synchronization
import VaultCore
import VaultFiles

/// The tree of vaults, servers and points that the mount shows, read from the catalog and
/// kept. Once it is older than `refreshInterval` the catalog is asked whether anything
/// changed, and the tree is read again when it did, so changes made by other processes show
/// without a remount; a server with 10,000 points is not re-read every second while `ls -l`
/// walks it.
final class TreeCache: Sendable {
    private let repository: Repository
    private let singleVault: String?
    private let files: PointFiles
    private let logger: Logger
    private let snapshot = Mutex(Snapshot())
    /// How many times the tree was read from the catalog (a figure for tests and debugging).
    let reads = Atomic<Int>(0)

    /// How old a catalog snapshot may be before the next request reads a new one.
    static let refreshInterval: TimeInterval = 1

    /// The tree and when it was read from the catalog, and last found current.
    private struct Snapshot {
        var tree: Tree?
        var built = Date.distantPast
        var checked = Date.distantPast
        /// The catalog's `changeCount` read before the tree; nil forces a new read.
        var changeCount: Int64?
        /// Moves with every tree kept and every `invalidate`: a tree read from an older
        /// generation is not kept.
        var generation = 0
    }

    /// `files` is told which points are still there each time a tree is kept.
    init(repository: Repository, singleVault: String?, files: PointFiles, logger: Logger) {
        self.repository = repository
        self.singleVault = singleVault
        self.files = files
        self.logger = logger
    }

    /// When the tree in use was read: what is made from it stays valid while this does.
    var built: Date { snapshot.withLock { $0.built } }

    /// The current tree.
    func current() -> Tree {
        let now = Date()
        let current = snapshot.withLock { $0 }
        if let tree = current.tree, now.timeIntervalSince(current.checked) < Self.refreshInterval { return tree }
        // Other hosts' new points, from a shared object store, reach the catalog in the background.
        repository.refreshFromStoreInBackground(every: 15)
        // A catalog that cannot tell whether it changed is read again.
        let changeCount: Int64?
        do { changeCount = try repository.catalog.changeCount() } catch {
            logger.warning("cannot tell whether the catalog changed; reading it again: \(error)")
            changeCount = nil
        }
        // A point being made may belong to a process that died: such a tree is re-read,
        // which recovers it.
        if let tree = current.tree, let changeCount, changeCount == current.changeCount,
            !tree.inventory.points.contains(where: { $0.status == .creating })
        {
            snapshot.withLock { if $0.generation == current.generation { $0.checked = now } }
            return tree
        }
        do {
            let inventory = try repository.catalog.inventory()
            reads.add(1, ordering: .relaxed)
            // In an object store that takes requests to the store: the background refresh does it.
            if inventory.points.contains(where: { $0.status == .creating }) && !repository.isShared {
                repository.recoverInterrupted()
            }
            let tree = Tree(inventory, singleVault: singleVault, now: now)
            // Kept only when no other tree was kept and no change was announced meanwhile, so
            // a slow read never hides the point a mkdir has just made.
            let kept = snapshot.withLock { state in
                guard state.generation == current.generation else { return false }
                state = Snapshot(
                    tree: tree, built: now, checked: now, changeCount: changeCount, generation: state.generation + 1)
                return true
            }
            if kept { files.keep(points: Set(inventory.points.filter { $0.status == .active }.map(\.id))) }
            return tree
        } catch {
            logger.error("cannot read the catalog: \(error)")
            return current.tree
                ?? Tree(Inventory(vaults: [], servers: [], points: [], disks: [:]), singleVault: singleVault)
        }
    }

    /// Makes the next request read the catalog again, and drops any tree still being read.
    func invalidate() {
        snapshot.withLock { state in
            state.checked = .distantPast
            state.changeCount = nil
            state.generation += 1
        }
    }
}
