internal import CRbd
import Glibc

/// A connection to one pool of a Ceph cluster. Closed when the last image opened through it
/// is gone.
final class RbdPool: Sendable {
    /// The `vfs_rbd_cluster` pointer, as its bits: set once, freed in `deinit` only.
    private let handle: UInt
    let pool: String
    /// How long a step may wait on a cluster that does not answer.
    static let timeoutSeconds: Int32 = 30

    init(_ access: CephAccess, pool: String) throws {
        var cluster: OpaquePointer?
        var error = [CChar](repeating: 0, count: 256)
        let r = vfs_rbd_connect(access.conf, access.id, pool, Self.timeoutSeconds, &cluster, &error, error.count)
        guard r == 0, let cluster else {
            let step = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw VaultError(
                r == -ENOENT && step.hasPrefix("cannot open pool")
                    ? .diskMissing : r == -EACCES || r == -EPERM ? .permissionDenied : .unreachable,
                "\(step): \(r == -ENOSYS ? "" : Posix.message(-r))".trimmingSuffix())
        }
        handle = UInt(bitPattern: Int(bitPattern: UnsafeMutableRawPointer(cluster)))
        self.pool = pool
    }

    var pointer: OpaquePointer { OpaquePointer(bitPattern: handle)! }

    deinit { vfs_rbd_disconnect(pointer) }
}

/// One open RBD image, or one of its snapshots (read-only). librbd takes reads from many
/// threads at once on one handle.
final class RbdImage: Sendable {
    /// The `vfs_rbd_image` pointer, as its bits: set once, freed in `deinit` only.
    private let handle: UInt
    /// Kept open while the image is.
    private let pool: RbdPool
    let name: String
    let snapshot: String?

    init(_ pool: RbdPool, name: String, snapshot: String? = nil) throws {
        var image: OpaquePointer?
        let r = vfs_rbd_open(pool.pointer, name, snapshot, &image)
        guard r == 0, let image else {
            let what =
                snapshot.map { "snapshot '\($0)' of RBD image \(pool.pool)/\(name)" }
                ?? "RBD image \(pool.pool)/\(name)"
            throw VaultError(Self.code(r), "cannot open \(what): \(Posix.message(-r))")
        }
        handle = UInt(bitPattern: Int(bitPattern: UnsafeMutableRawPointer(image)))
        self.pool = pool
        self.name = name
        self.snapshot = snapshot
    }

    deinit { vfs_rbd_close(pointer) }

    private var pointer: OpaquePointer { OpaquePointer(bitPattern: handle)! }

    static func code(_ r: Int32) -> VaultError.Code {
        switch -r {
        case ENOENT: return .diskMissing
        case EACCES, EPERM: return .permissionDenied
        case ETIMEDOUT, ESHUTDOWN, ENOTCONN: return .unreachable
        default: return .io
        }
    }

    private func check(_ r: Int32, _ what: String) throws {
        guard r >= 0 else {
            throw VaultError(Self.code(r), "\(what) of RBD image \(pool.pool)/\(name): \(Posix.message(-r))")
        }
    }

    func size() throws -> Int64 {
        var size: UInt64 = 0
        try check(vfs_rbd_size(pointer, &size), "cannot size")
        return Int64(clamping: size)
    }

    /// Whether the image keeps a valid object map with fast-diff: then a diff by whole objects
    /// reads only the map.
    var hasFastDiff: Bool { vfs_rbd_fast_diff(pointer) != 0 }

    /// Reads `length` bytes at `offset`; returns how many were read (fewer only at the end).
    func read(into buffer: UnsafeMutableRawPointer, offset: Int64, length: Int) throws -> Int {
        let n = vfs_rbd_read(pointer, UInt64(offset), length, buffer)
        guard n >= 0 else {
            throw VaultError(
                Self.code(Int32(n)),
                "cannot read RBD image \(pool.pool)/\(name) at \(offset): \(Posix.message(Int32(-n)))")
        }
        return n
    }

    struct Extent: Equatable {
        var offset: Int64
        var length: Int64
        /// False where the range was discarded: it reads as zeros.
        var exists: Bool
    }

    /// The extents that differ from snapshot `from`, or every allocated one when `from` is
    /// nil; by whole objects when `wholeObject`.
    func diff(from: String?, wholeObject: Bool) throws -> [Extent] {
        var extents: UnsafeMutablePointer<vfs_rbd_extent>?
        var count = 0
        try check(vfs_rbd_diff(pointer, from, wholeObject ? 1 : 0, &extents, &count), "cannot list the changes")
        defer { free(extents) }
        return (0..<count).map {
            let e = extents![$0]
            return Extent(offset: Int64(clamping: e.offset), length: Int64(clamping: e.length), exists: e.exists != 0)
        }
    }

    func createSnapshot(_ snapshot: String) throws {
        try check(vfs_rbd_snap_create(pointer, snapshot), "cannot make snapshot '\(snapshot)'")
    }

    /// Removes a snapshot; one that is gone already is no error.
    func removeSnapshot(_ snapshot: String) throws {
        let r = vfs_rbd_snap_remove(pointer, snapshot)
        if r == -ENOENT { return }
        try check(r, "cannot remove snapshot '\(snapshot)'")
    }

    func snapshotNames() throws -> [String] {
        var names: UnsafeMutablePointer<CChar>?
        var length = 0
        try check(vfs_rbd_snap_names(pointer, &names, &length), "cannot list the snapshots")
        defer { free(names) }
        guard let names, length > 0 else { return [] }
        return UnsafeBufferPointer(start: names, count: length).split(separator: 0).map {
            String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}

extension String {
    fileprivate func trimmingSuffix() -> String {
        var text = self
        while text.hasSuffix(":") || text.hasSuffix(" ") { text.removeLast() }
        return text
    }
}
