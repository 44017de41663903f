internal import CExt2fs
import Glibc
import Synchronization
import VaultCore

/// ext2, ext3 and ext4 through libext2fs, read-only, with the bytes coming from a point's
/// image in memory: no loop device, no kernel mount, no child process. The journal is never
/// replayed: a filesystem taken while mounted shows as its last checkpoint left it.
public final class Ext2Filesystem: FilesystemReader {
    /// The source and the last error it gave, reachable from the C read callback.
    private final class SourceBox: Sendable {
        let source: any ByteSource
        let lastError = Mutex<String?>(nil)
        init(_ source: any ByteSource) { self.source = source }
    }

    /// libext2fs handles are not thread-safe: every call on `fs` holds this lock.
    private let fs: Mutex<OpaquePointer>
    private let box: SourceBox
    public let rootInode: UInt64 = 2
    private let blockSize: UInt32
    /// The extent maps of its open files.
    let extentMaps = ExtentMaps()
    /// Directory entry file types (EXT2_FT_*) by number.
    static let kinds: [Int: FileKind] = [
        1: .file, 2: .directory, 3: .characterDevice, 4: .blockDevice, 5: .fifo, 6: .socket, 7: .symlink,
    ]
    public let summary: FilesystemSummary

    public static func recognizes(_ header: [UInt8]) -> Bool {
        header.count >= 1024 + 58 && header[1024 + 56] == 0x53 && header[1024 + 57] == 0xEF
    }

    public required init(source: any ByteSource) throws {
        let superblock = try source.bytes(at: 1024, count: 1024)
        guard Self.descriptorsFit(superblock, in: source.size) else {
            throw VaultError(
                .corrupt,
                "not a readable ext2/3/4 filesystem: its group descriptors would not fit in \(source.size) bytes")
        }
        let box = SourceBox(source)
        let unmanaged = Unmanaged.passRetained(box)
        var handle: OpaquePointer?
        let code = vfs_ext2_open(
            { context, offset, buffer, length in
                let box = Unmanaged<SourceBox>.fromOpaque(context!).takeUnretainedValue()
                do {
                    let got = try box.source.readFully(
                        at: Int64(offset), into: UnsafeMutableRawBufferPointer(start: buffer, count: length))
                    if got < length {
                        buffer!.advanced(by: got).initializeMemory(as: UInt8.self, repeating: 0, count: length - got)
                        return EIO
                    }
                    return 0
                } catch {
                    box.lastError.withLock { $0 = "\(error)" }
                    return EIO
                }
            }, unmanaged.toOpaque(), UInt64(source.size), &handle)
        guard code == 0, let handle else {
            unmanaged.release()
            throw Self.error(code, "not a readable ext2/3/4 filesystem", box)
        }
        // The box lives as long as the handle; deinit releases both.
        self.box = box
        var info = vfs_ext2_info()
        vfs_ext2_info(handle, &info)
        blockSize = info.block_size
        fs = Mutex(handle)
        var notes: [String] = []
        if info.needs_recovery != 0 {
            notes.append(
                "taken while mounted: its journal was not replayed, so files show as its last checkpoint left them")
        }
        if info.errors_recorded != 0 { notes.append("the filesystem had recorded errors when the point was taken") }
        let label = withUnsafeBytes(of: info.label) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let uuid = withUnsafeBytes(of: info.uuid) { bytes in
            bytes.enumerated().map { (i, b) in
                ([4, 6, 8, 10].contains(i) ? "-" : "") + String(b, radix: 16).leftPadded(2)
            }.joined()
        }
        summary = FilesystemSummary(
            type: info.is_ext4 != 0 ? "ext4" : info.has_journal != 0 ? "ext3" : "ext2",
            label: label.isEmpty ? nil : label, uuid: uuid, notes: notes)
    }

    /// Whether a superblock's group descriptors fit in the source: a damaged one can ask
    /// libext2fs for gigabytes of them before anything else is checked.
    static func descriptorsFit(_ sb: [UInt8], in size: Int64) -> Bool {
        let log = le32(sb, 24)
        let perGroup = UInt64(le32(sb, 32))
        guard log <= 6, perGroup > 0 else { return false }
        let is64 = le32(sb, 96) & 0x80 != 0
        let blocks = UInt64(le32(sb, 4)) | (is64 ? UInt64(le32(sb, 336)) << 32 : 0)
        let first = UInt64(le32(sb, 20))
        guard blocks > first else { return false }
        let groups = (blocks - first + perGroup - 1) / perGroup
        let descriptor = is64 ? max(32, UInt64(sb[254]) | UInt64(sb[255]) << 8) : 32
        let (bytes, overflow) = groups.multipliedReportingOverflow(by: descriptor)
        return !overflow && bytes <= UInt64(max(0, size))
    }

    deinit {
        fs.withLock { vfs_ext2_close($0) }
        Unmanaged.passUnretained(box).release()
    }

    public func attributes(_ inode: UInt64) throws -> FileAttributes {
        var a = vfs_ext2_attr()
        try call("cannot read inode \(inode)") { vfs_ext2_stat($0, try number(inode), &a) }
        guard let kind = FileKind(mode: a.mode) else { throw VaultError(.corrupt, "inode \(inode) has no valid type") }
        // ext4's largest file is 2^32 blocks; a larger size is damage, and copying it out
        // would write zeros for ever.
        guard a.size <= UInt64(blockSize) << 32, a.blocks512 <= UInt64(Int64.max) else {
            throw VaultError(.corrupt, "inode \(inode) has an impossible size")
        }
        return FileAttributes(
            inode: inode, kind: kind, permissions: a.mode & 0o7777, uid: a.uid, gid: a.gid, links: a.nlink,
            size: Int64(bitPattern: a.size), blocks: Int64(bitPattern: a.blocks512),
            accessed: FileTime(seconds: a.atime, nanoseconds: a.atime_nsec),
            modified: FileTime(seconds: a.mtime, nanoseconds: a.mtime_nsec),
            changed: FileTime(seconds: a.ctime, nanoseconds: a.ctime_nsec),
            deviceMajor: a.rdev_major, deviceMinor: a.rdev_minor)
    }

    /// A directory's entries but its own `.` and `..`; an entry no name may be (holding `/`
    /// or NUL, or a second `.` or `..`, as only damage or a hostile guest makes) is counted
    /// and left out.
    public func entries(_ directory: UInt64) throws -> DirectoryListing {
        struct State {
            var listing = DirectoryListing(entries: [], unusable: [])
            var dots: Set<[UInt8]> = []
        }
        var state = State()
        try call("cannot list directory inode \(directory)") { fs in
            let dir = try number(directory)
            return withUnsafeMutablePointer(to: &state) { state in
                vfs_ext2_list(
                    fs, dir,
                    { context, name, length, inode, type in
                        let state = context!.assumingMemoryBound(to: State.self)
                        let name = FileName(Array(UnsafeRawBufferPointer(start: name, count: Int(length))))
                        if name.bytes == [0x2E] || name.bytes == [0x2E, 0x2E],
                            state.pointee.dots.insert(name.bytes).inserted
                        {
                            return 0
                        }
                        let entry = FileEntry(name: name, inode: UInt64(inode), kind: Ext2Filesystem.kinds[Int(type)])
                        if name.isUsable {
                            state.pointee.listing.entries.append(entry)
                        } else {
                            state.pointee.listing.unusable.append(entry)
                        }
                        return 0
                    }, state)
            }
        }
        return state.listing
    }

    public func open(_ inode: UInt64) throws -> any OpenFile {
        try open(inode, extentLimit: extentMaps.extentLimit)
    }

    /// Opens a file, reading its extents when it has an extent tree of at most `extentLimit`.
    func open(_ inode: UInt64, extentLimit: Int) throws -> Ext2File {
        let size = try attributes(inode).size
        let mapped = extentMap(inode, limit: extentLimit) != nil
        return Ext2File(
            filesystem: self, source: box.source, inode: inode, size: size, extentLimit: mapped ? extentLimit : nil)
    }

    /// `inode`'s extent map, kept or read again from its tree: nil when it has no extent tree,
    /// more than `limit` extents, or a tree that cannot be walked to its end (left to
    /// libext2fs, which reads what it can and fails at the blocks it cannot find).
    func extentMap(_ inode: UInt64, limit: Int) -> ExtentMap? {
        if let kept = extentMaps.map(inode) { return kept.extents.count <= limit ? kept : nil }
        var walk = ExtentWalk(limit: limit)
        var mapped: Int32 = 0
        let walked =
            (try? call("cannot map inode \(inode)") { fs in
                let n = try number(inode)
                return withUnsafeMutablePointer(to: &walk) { walk in
                    vfs_ext2_extents(
                        fs, n, &mapped,
                        { context, logical, length, physical, unwritten in
                            let walk = context!.assumingMemoryBound(to: ExtentWalk.self)
                            return walk.pointee.add(
                                logical: logical, count: length, physical: physical, unwritten: unwritten != 0) ? 0 : 1
                        }, walk)
                }
            }) != nil
        guard walked, mapped != 0, !walk.overflowed else { return nil }
        let map = ExtentMap(blockSize: UInt64(blockSize), extents: walk.extents)
        extentMaps.keep(map, for: inode)
        return map
    }

    /// The written extents a walk of the tree has met, up to a bound on all it meets.
    private struct ExtentWalk {
        let limit: Int
        var extents: [ExtentMap.Extent] = []
        var met = 0
        var overflowed = false

        /// Whether the walk goes on.
        mutating func add(logical: UInt64, count: UInt64, physical: UInt64, unwritten: Bool) -> Bool {
            met += 1
            guard met <= limit else {
                overflowed = true
                return false
            }
            if !unwritten, count > 0 {
                extents.append(
                    ExtentMap.Extent(
                        logical: UInt32(truncatingIfNeeded: logical), count: UInt32(truncatingIfNeeded: count),
                        physical: physical))
            }
            return true
        }
    }

    /// A file's bytes through libext2fs, for a file without an `ExtentMap`.
    func read(_ inode: UInt64, at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0, destination.count > 0 else { return 0 }
        var got = 0
        try call("cannot read inode \(inode) at \(offset)") {
            vfs_ext2_read($0, try number(inode), UInt64(offset), destination.baseAddress, destination.count, &got)
        }
        return got
    }

    public func linkTarget(_ inode: UInt64) throws -> FileName {
        var buffer = [CChar](repeating: 0, count: 4097)
        var length = 0
        try call("cannot read symlink inode \(inode)") {
            vfs_ext2_readlink($0, try number(inode), &buffer, buffer.count, &length)
        }
        return FileName(buffer.prefix(length).map { UInt8(bitPattern: $0) })
    }

    /// SEEK_DATA or SEEK_HOLE through libext2fs, for a file without an `ExtentMap`: each call
    /// walks the extent tree from its start.
    func seek(_ inode: UInt64, from offset: Int64, data: Bool) throws -> Int64? {
        guard offset >= 0 else { return nil }
        var result: UInt64 = 0
        var code = 0
        try call("cannot map inode \(inode)") { fs in
            code = vfs_ext2_seek(fs, try number(inode), UInt64(offset), data ? 1 : 0, &result)
            return code == ENXIO ? 0 : code
        }
        guard code != ENXIO else { return nil }
        guard let position = Int64(exactly: result) else {
            throw VaultError(.corrupt, "inode \(inode) maps data beyond any file size")
        }
        return position
    }

    public func attributeNames(_ inode: UInt64) throws -> [String] {
        var needed = 0
        try call("cannot read attributes of inode \(inode)") {
            vfs_ext2_xattr_names($0, try number(inode), nil, 0, &needed)
        }
        guard needed > 0 else { return [] }
        var buffer = [CChar](repeating: 0, count: needed)
        try call("cannot read attributes of inode \(inode)") {
            vfs_ext2_xattr_names($0, try number(inode), &buffer, buffer.count, &needed)
        }
        return buffer.prefix(needed).split(separator: 0).map {
            String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public func attribute(_ inode: UInt64, named name: String) throws -> [UInt8] {
        let n = try number(inode)
        var needed = 0
        try call("cannot read attribute \(name) of inode \(inode)") {
            vfs_ext2_xattr_value($0, n, name, nil, 0, &needed)
        }
        var value = [UInt8](repeating: 0, count: needed)
        try call("cannot read attribute \(name) of inode \(inode)") { fs in
            value.withUnsafeMutableBytes { vfs_ext2_xattr_value(fs, n, name, $0.baseAddress, $0.count, &needed) }
        }
        return Array(value.prefix(needed))
    }

    // MARK: Calls into libext2fs

    private func number(_ inode: UInt64) throws -> UInt32 {
        guard inode > 0, inode <= UInt64(UInt32.max) else { throw VaultError(.notFound, "no inode \(inode)") }
        return UInt32(inode)
    }

    /// Runs one libext2fs call under the lock; a non-zero result becomes an error that says
    /// what failed and why (the chunk store's own message when a read failed below).
    private func call(_ what: String, _ body: (OpaquePointer) throws -> Int) throws {
        // The reason is taken while the lock is held: after it, another call may replace it.
        let failure = try fs.withLock { fs -> VaultError? in
            box.lastError.withLock { $0 = nil }
            let code = try body(fs)
            return code == 0 ? nil : Self.error(code, what, box)
        }
        if let failure { throw failure }
    }

    /// Call with the handle's lock held, or before the handle exists.
    private static func error(_ code: Int, _ what: String, _ box: SourceBox) -> VaultError {
        let reason = box.lastError.withLock { $0 } ?? String(cString: vfs_ext2_error(code))
        switch Int32(truncatingIfNeeded: code) {
        case ENODATA: return VaultError(.noAttribute, "\(what): no such attribute")
        case EINVAL where code < 256: return VaultError(.invalidArgument, "\(what): \(reason)")
        case ENAMETOOLONG where code < 256: return VaultError(.invalidArgument, "\(what): \(reason)")
        default: return VaultError(.corrupt, "\(what): \(reason)")
        }
    }
}
