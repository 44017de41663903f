import Foundation
import Glibc

/// A reader's claim on the points of one open image (the point and its chain), so that
/// garbage collection keeps their maps and chunks while the image stays open, like an
/// unlinked file. It is a file under `locks/readers/` holding the point ids, flock'd shared
/// by its holder for as long as the value lives: a reader that died leaves a file nobody
/// holds, which the next collection removes and ignores.
public final class ReaderLease: Sendable {
    let path: String
    private let lock: FileLock

    fileprivate init(path: String, lock: FileLock) {
        self.path = path
        self.lock = lock
    }

    deinit { unlink(path) }

    static func folder(_ repository: Repository) -> String { "\(repository.root)/locks/readers" }

    /// Point ids held by readers that are alive; leases of dead readers are removed.
    static func heldPoints(_ repository: Repository, removeDead: Bool) -> Set<String> {
        var held = Set<String>()
        let folder = folder(repository)
        for name in Posix.listDirectory(folder) where name.hasSuffix(".lease") || name.hasSuffix(".pin") {
            let path = "\(folder)/\(name)"
            // An instant restore's pin holds its points until the restore ends, whether or
            // not a mount serves it now.
            if name.hasSuffix(".pin") {
                let text = (try? Posix.readFile(path, limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) }
                held.formUnion((text ?? "").split(separator: "\n").map(String.init))
                continue
            }
            let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                if removeDead { unlink(path) }
                continue
            }
            let text = (try? Posix.readFile(path, limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            held.formUnion(text.split(separator: "\n").map(String.init))
        }
        return held
    }
}

extension Repository {
    /// Opens one disk of a point for reading: leases the point's chain, then applies it.
    /// Garbage collection keeps what the lease names until it is released, even when the
    /// point is deleted meanwhile. `cached` is a flattened image the caller kept; it is used
    /// only when the point's maps are still there. A repository that cannot be written gives
    /// no lease: nothing can be deleted from it.
    public func openImage(point id: String, disk: String, cached: FlatImage? = nil) throws -> (
        image: FlatImage, lease: ReaderLease?
    ) {
        guard readOnlyReason == nil else { return (try cached ?? flatten(point: id, disk: disk), nil) }
        // Shared with other readers; a collection takes it alone while it decides what is
        // in use, so a lease is either seen by it or taken after its maps are gone.
        let gate = try FileLock.lock("\(root)/locks/leases.lock", shared: true, mode: modes.file)
        defer { _ = gate }
        let chain = try catalog.chain(endingAt: id)
        // A disk too full for a lease file still lets the image open: restores come first,
        // and such a reader is then not protected from a deletion that runs meanwhile.
        let lease: ReaderLease?
        do {
            lease = try takeLease(on: chain.map(\.id))
        } catch let error as VaultError where error.code == .noSpace {
            lease = nil
        }
        do {
            guard try !maps.disks(of: id).isEmpty else { throw VaultError.notFound("point \(id) was deleted") }
        } catch let error as VaultError where error.code == .unreachable && cached != nil {
            // The store is away: an image flattened before still reads from what is cached.
        }
        return (try cached ?? flatten(point: id, disk: disk), lease)
    }

    /// Keeps `points` (an instant restore's chain) from garbage collection until
    /// `releaseRestorePin`, across mounts and restarts: a restore fills from them for hours.
    func takeRestorePin(_ id: String, on points: [String]) throws {
        let folder = ReaderLease.folder(self)
        try Posix.makeDirectory(folder, mode: modes.directory)
        let text = Array(points.joined(separator: "\n").utf8) + [10]
        try Posix.writeFileAtomically("\(folder)/restore-\(id).pin", text, mode: modes.file)
    }

    /// Lets the points of restore `id` go; returns whether it held any. A pin whose restore
    /// this host no longer keeps (its state folder was lost) goes with `restore cancel ID`.
    @discardableResult
    public func releaseRestorePin(_ id: String) -> Bool {
        guard InstantRestores.isId(id) else { return false }
        return unlink("\(ReaderLease.folder(self))/restore-\(id).pin") == 0
    }

    private func takeLease(on points: [String]) throws -> ReaderLease {
        let folder = ReaderLease.folder(self)
        try Posix.makeDirectory(folder, mode: modes.directory)
        let path = "\(folder)/\(getpid())-\(UInt64.random(in: 0...UInt64.max)).lease"
        let fd = try Posix.createFile(path, mode: modes.file, what: "cannot create reader lease")
        close(fd)
        guard let lock = try FileLock.tryLock(path, shared: true, mode: modes.file) else {
            unlink(path)
            throw VaultError(.busy, "cannot hold reader lease \(path)")
        }
        let lease = ReaderLease(path: path, lock: lock)
        let text = Array(points.joined(separator: "\n").utf8) + [10]
        let writer = try Posix.open(path, O_WRONLY | O_NOFOLLOW)
        defer { close(writer) }
        try text.withUnsafeBytes { try Posix.writeAll(writer, $0, path: path) }
        return lease
    }
}
