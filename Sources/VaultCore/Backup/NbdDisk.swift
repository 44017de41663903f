internal import CNbd
import Foundation
import Synchronization

/// One connection to an NBD export through libnbd, which takes requests from several
/// threads at once on one handle.
final class NbdConnection: Sendable {
    /// The `vfs_nbd` pointer, as its bits: set once, freed in `deinit` only.
    private let handle: UInt
    let spec: NbdSpec

    init(_ spec: NbdSpec, bitmap: String?) throws {
        var nbd: OpaquePointer?
        var error = [CChar](repeating: 0, count: 512)
        let r = vfs_nbd_connect(spec.description, bitmap, &nbd, &error, error.count)
        guard r == 0, let nbd else {
            throw VaultError(
                r == -ENOENT || r == -ECONNREFUSED ? .diskMissing : .unreachable,
                "cannot reach NBD export \(spec.description): \(Self.text(error))")
        }
        handle = UInt(bitPattern: Int(bitPattern: UnsafeMutableRawPointer(nbd)))
        self.spec = spec
    }

    deinit { vfs_nbd_close(pointer) }

    private var pointer: OpaquePointer { OpaquePointer(bitPattern: handle)! }

    static func text(_ error: [CChar]) -> String {
        String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func size() throws -> Int64 {
        let size = vfs_nbd_size(pointer)
        guard size >= 0 else { throw VaultError(.io, "cannot size NBD export \(spec.description)") }
        return size
    }

    func read(into buffer: UnsafeMutableRawPointer, offset: Int64, length: Int) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard vfs_nbd_pread(pointer, buffer, length, UInt64(offset), &error, error.count) == 0 else {
            throw VaultError(.io, "cannot read NBD export \(spec.description) at \(offset): \(Self.text(error))")
        }
    }

    struct Extent {
        var offset: Int64
        var length: Int64
        var flags: UInt32
    }

    /// The extents of `base:allocation` (`dirty` false) or of the dirty bitmap.
    func extents(dirty: Bool) throws -> [Extent] {
        var list: UnsafeMutablePointer<vfs_nbd_extent>?
        var count = 0
        var error = [CChar](repeating: 0, count: 512)
        let r = vfs_nbd_extents(pointer, dirty ? 1 : 0, &list, &count, &error, error.count)
        guard r == 0 else {
            throw VaultError(.io, "cannot list the extents of NBD export \(spec.description): \(Self.text(error))")
        }
        defer { free(list) }
        return (0..<count).map {
            let e = list![$0]
            return Extent(offset: Int64(clamping: e.offset), length: Int64(clamping: e.length), flags: e.flags)
        }
    }
}

/// A disk that is an NBD export of qemu or qemu-storage-daemon (`nbd+unix:///EXPORT?socket=
/// PATH`), read through libnbd between the freeze and thaw hooks, which must keep the export
/// from changing while it is read (pause the VM, or freeze its filesystems).
///
/// With `--bitmap NAME --qmp SOCKET`, vaultctl keeps qemu dirty bitmaps on the export's block
/// node through QMP: at each point, in one transaction, it adds `NAME-<point id>`, which records
/// from then on, and stops the one recording before. A bitmap thus holds the changes from its
/// point to the next one, and the changes since a parent are the union of the bitmaps from the
/// parent's on. vaultctl merges them into a bitmap of its own, exports it read-only beside the
/// node as `vaultfs-<point id>` (qemu exports no bitmap that still records), and reads only what
/// it marks. Bitmaps of points no incremental can start from any more are removed after each
/// commit and by gc. Without the parent's bitmap, every allocated extent is read.
final class NbdDisk: DiskOrigin {
    let name: String
    let spec: NbdSpec
    private let bitmap: DirtyBitmap?
    private let server: String

    init(name: String, spec: NbdSpec, bitmap: DirtyBitmap?, server: String) throws {
        self.name = name
        self.spec = spec
        self.bitmap = bitmap
        self.server = server
        do {
            if let bitmap {
                _ = try Qmp(socket: bitmap.qmp).node(of: spec.export)
            } else {
                _ = try NbdConnection(spec, bitmap: nil)
            }
        } catch let error as VaultError {
            throw VaultError(error.code, "cannot read disk '\(name)' of server '\(server)': \(error.message)")
        }
    }

    var capturesInstantly: Bool { false }
    func discard(pointId: String) {}

    /// How many connections a backup reads through.
    static let connections = 4

    private func prefix(_ bitmap: DirtyBitmap) -> String { "\(bitmap.name)-" }

    /// The point a bitmap of ours is named for, or nil for any other bitmap.
    private func point(of bitmap: String, prefix: String) -> String? {
        guard bitmap.hasPrefix(prefix) else { return nil }
        let id = String(bitmap.dropFirst(prefix.count))
        return UUID(uuidString: id) != nil ? id : nil
    }

    /// Takes down what a killed backup left on the node: its read-only export and the bitmap
    /// it had merged (a backup of this server holds the server's lock, so none is running).
    private func removeLeftovers(_ qmp: Qmp, node: String, bitmap: DirtyBitmap) throws -> [String] {
        var removed: [String] = []
        let exports = try qmp.execute("query-block-exports") as? [[String: Any]] ?? []
        for export in exports where export["node-name"] as? String == node {
            guard let id = export["id"] as? String, id.hasPrefix("vaultfs-") else { continue }
            try qmp.execute("block-export-del", ["id": id, "mode": "hard"])
            removed.append("\(spec.description): export \(id)")
        }
        for found in try qmp.bitmaps(on: node) where found.name.hasPrefix("\(bitmap.name).read-") {
            try qmp.execute("block-dirty-bitmap-remove", ["node": node, "name": found.name])
            removed.append("\(spec.description): bitmap \(found.name)")
        }
        return removed
    }

    func capture(pointId: String) throws -> any CapturedDisk {
        guard let bitmap else {
            var readers: [NbdConnection] = []
            for _ in 0..<Self.connections { readers.append(try NbdConnection(spec, bitmap: nil)) }
            return try NbdCapture(name: name, spec: spec, readers: readers, changes: nil, cleanup: nil)
        }
        let qmp = try Qmp(socket: bitmap.qmp)
        let node = try qmp.node(of: spec.export)
        let prefix = prefix(bitmap)
        _ = try removeLeftovers(qmp, node: node, bitmap: bitmap)
        var ours = try qmp.bitmaps(on: node).filter { point(of: $0.name, prefix: prefix) != nil }
        // A bitmap qemu could not keep up to date says nothing: it goes. The union of the
        // others then has a gap, and so does it when none was recording (the newest one was
        // removed): every allocated extent is read.
        let damaged = ours.filter(\.inconsistent)
        for bitmap in damaged {
            try qmp.execute("block-dirty-bitmap-remove", ["node": node, "name": bitmap.name])
        }
        ours.removeAll { $0.inconsistent }
        let whole = damaged.isEmpty && ours.contains(where: \.recording)
        let mine = prefix + pointId
        try qmp.transaction(
            [("block-dirty-bitmap-add", ["node": node, "name": mine, "persistent": true])]
                + ours.filter(\.recording).map { ("block-dirty-bitmap-disable", ["node": node, "name": $0.name]) })
        FaultInjection.reached("bitmap-rotated")
        if !whole { ours = [] }
        let union = "\(bitmap.name).read-\(pointId)"
        // One export per disk: several disks of a VM may be backed up through one qemu.
        let export = "vaultfs-\(pointId)-\(name)"
        let cleanup = NbdCapture.Cleanup(
            socket: bitmap.qmp, node: node, export: export, bitmap: ours.isEmpty ? nil : union)
        do {
            var arguments: [String: Any] = [
                "type": "nbd", "id": export, "node-name": node, "name": export, "writable": false,
            ]
            if !ours.isEmpty {
                try qmp.execute("block-dirty-bitmap-add", ["node": node, "name": union, "disabled": true])
                try qmp.execute(
                    "block-dirty-bitmap-merge",
                    ["node": node, "target": union, "bitmaps": ours.map(\.name) as [Any]])
                arguments["bitmaps"] = [union]
            }
            try qmp.execute("block-export-add", arguments)
            let reading = NbdSpec(export: export, socket: spec.socket)
            var readers = [try NbdConnection(reading, bitmap: ours.isEmpty ? nil : union)]
            for _ in 1..<Self.connections { readers.append(try NbdConnection(reading, bitmap: nil)) }
            let changes =
                ours.isEmpty
                ? nil
                : NbdCapture.Changes(
                    since: Set(ours.map { String($0.name.dropFirst(prefix.count)) }),
                    extents: try readers[0].extents(dirty: true).filter { $0.flags & 1 != 0 })
            return try NbdCapture(name: name, spec: spec, readers: readers, changes: changes, cleanup: cleanup)
        } catch {
            cleanup.run(using: qmp)
            throw error
        }
    }

    /// The descriptions of the bitmaps `tidy` removes.
    func doomed(_ kept: KeptPoints) throws -> [String] {
        guard let bitmap else { return [] }
        let qmp = try Qmp(socket: bitmap.qmp)
        let node = try qmp.node(of: spec.export)
        let exports = try qmp.execute("query-block-exports") as? [[String: Any]] ?? []
        let leftExports = exports.filter {
            $0["node-name"] as? String == node && ($0["id"] as? String ?? "").hasPrefix("vaultfs-")
        }.compactMap { $0["id"] as? String }.map { "\(spec.description): export \($0)" }
        let leftBitmaps = try qmp.bitmaps(on: node).map(\.name).filter { $0.hasPrefix("\(bitmap.name).read-") }
        return leftExports
            + (leftBitmaps + (try doomedBitmaps(qmp, node: node, bitmap: bitmap, kept))).map {
                "\(spec.description): bitmap \($0)"
            }
    }

    /// Our bitmaps of known points older than any an incremental may start from. The
    /// recording one stays whatever its point: the changes since the last capture are only
    /// there.
    private func doomedBitmaps(_ qmp: Qmp, node: String, bitmap: DirtyBitmap, _ kept: KeptPoints) throws -> [String] {
        let prefix = prefix(bitmap)
        return try qmp.bitmaps(on: node).filter { found in
            guard !found.recording, let id = point(of: found.name, prefix: prefix) else { return false }
            return kept.known.contains(id) && !kept.recent.contains(id)
        }.map(\.name)
    }

    func tidy(_ kept: KeptPoints) -> [String] {
        guard let bitmap else { return [] }
        do {
            let qmp = try Qmp(socket: bitmap.qmp)
            let node = try qmp.node(of: spec.export)
            _ = try removeLeftovers(qmp, node: node, bitmap: bitmap)
            for name in try doomedBitmaps(qmp, node: node, bitmap: bitmap, kept) {
                try qmp.execute("block-dirty-bitmap-remove", ["node": node, "name": name])
            }
            return []
        } catch {
            return ["\(error)"]
        }
    }
}

/// An NBD export as one backup reads it.
final class NbdCapture: CapturedDisk {
    /// What the dirty bitmaps marked, and the points whose bitmaps they were.
    struct Changes {
        var since: Set<String>
        var extents: [NbdConnection.Extent]
    }

    /// Takes down the export and the merged bitmap a capture made, once it is read. Through a
    /// QMP connection of its own: a qemu monitor takes one client at a time, so none is held
    /// while the disks are read (the next disk's capture needs one).
    struct Cleanup {
        let socket: String
        let node: String
        let export: String
        let bitmap: String?

        /// Through `connection` when one is open, else a new one.
        func run(using connection: Qmp? = nil) {
            guard let qmp = connection ?? (try? Qmp(socket: socket)) else { return }
            _ = try? qmp.execute("block-export-del", ["id": export, "mode": "hard"])
            if let bitmap { _ = try? qmp.execute("block-dirty-bitmap-remove", ["node": node, "name": bitmap]) }
        }
    }

    let name: String
    private let spec: NbdSpec
    private let readers: Mutex<[NbdConnection]>
    private let turn = Atomic<Int>(0)
    private let changes: Changes?
    private let cleanup: Mutex<Cleanup?>
    let size: Int64

    init(name: String, spec: NbdSpec, readers: [NbdConnection], changes: Changes?, cleanup: Cleanup?) throws {
        self.name = name
        self.spec = spec
        self.readers = Mutex(readers)
        self.changes = changes
        self.cleanup = Mutex(cleanup)
        size = try readers[0].size()
    }

    deinit {
        // The connections go first: qemu then takes the export down at once.
        readers.withLock { $0 = [] }
        cleanup.withLock { $0 }?.run()
    }

    var path: String { spec.description }
    var readsDirect: Bool { true }
    func prefetch(offset: Int64, length: Int) {}

    private func reader() throws -> NbdConnection {
        try readers.withLock { list in
            guard !list.isEmpty else { throw VaultError(.io, "NBD export \(spec.description) was closed") }
            return list[turn.add(1, ordering: .relaxed).oldValue % list.count]
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, offset: Int64, length: Int) throws -> Int {
        let length = Int(max(0, min(Int64(length), size - offset)))
        guard length > 0 else { return 0 }
        try reader().read(into: buffer.baseAddress!, offset: offset, length: length)
        return length
    }

    func readPlan(chunkSize: Int, parent: (id: String, size: Int64)?) throws -> ReadPlan {
        let count = ChunkMap.positions(diskSize: size, chunkSize: chunkSize)
        var note: String?
        if let parent, let changes, changes.since.contains(parent.id), parent.size == size {
            return ReadPlan(
                positions: ReadPlan.positions(
                    touching: changes.extents.map { ($0.offset, $0.length) }, chunkSize: chunkSize, count: count),
                carriesParent: true)
        }
        if let parent, changes != nil || cleanup.withLock({ $0 }) != nil {
            note =
                parent.size != size
                ? "disk '\(name)' changed size since its parent point: every allocated extent is read"
                : "qemu holds no dirty bitmap of disk '\(name)' from its parent point on: every allocated extent is read"
        }
        // Read what is not known to be zeros (base:allocation's flag 2).
        let data = try reader().extents(dirty: false).filter { $0.flags & 2 == 0 }
        return ReadPlan(
            positions: ReadPlan.positions(
                touching: data.map { ($0.offset, $0.length) }, chunkSize: chunkSize, count: count),
            note: note)
    }
}
