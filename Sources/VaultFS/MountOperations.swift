import Foundation
import Glibc
import VaultCore
import VaultFiles

/// What a mount answers, request by request: one repository's `FileSystem`, or the
/// locations' root over several (`--all-locations`).
protocol MountOperations: AnyObject, Sendable {
    var uid: UInt32 { get }
    var gid: UInt32 { get }
    func lookup(parent: UInt64, name: FileName) -> Reply
    func getattr(_ inode: UInt64) -> Reply
    func readlink(_ inode: UInt64) -> Reply
    func opendir(_ inode: UInt64) -> Reply
    func readdir(handle: UInt64, offset: Int, size: Int) -> Reply
    func readdirplus(handle: UInt64, offset: Int, size: Int) -> Reply
    func getxattr(_ inode: UInt64, name: String, size: Int) -> Reply
    func listxattr(_ inode: UInt64, size: Int) -> Reply
    func open(_ inode: UInt64, flags: Int32) -> Reply
    func read(handle: UInt64, offset: Int64, size: Int) -> Reply
    func lseek(handle: UInt64, offset: Int64, whence: Int32) -> Reply
    func release(handle: UInt64) -> Reply
    func statfs() -> Reply
    func mkdir(parent: UInt64, name: String) -> Reply
    func rmdir(parent: UInt64, name: String) -> Reply
    func write(handle: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer) -> Reply
    func flush(handle: UInt64) -> Reply
    func setattr(_ inode: UInt64, newSize: Int64?) -> Reply
    func fallocate(handle: UInt64) -> Reply
    /// Starts what serves in the background (instant restores), once mounted.
    func start()
    /// Stops it when the mount ends.
    func shutdown()
}

extension FileSystem: MountOperations {
    func start() { startRestores() }
}

/// The root of a mount of every location: a folder per location, each showing what a mount
/// of that location alone shows. A location's inode and handle numbers are its own
/// `FileSystem`'s with the location's number (1 up) in bits 59–62; the root and its listing
/// have none.
final class LocationsRoot: MountOperations {
    let uid = getuid()
    let gid = getgid()
    let names: [String]
    let locations: [FileSystem]
    private let created = Date()

    static let shift: UInt64 = 59
    static let mask: UInt64 = 0xF << shift
    /// Locations one mount can show: the numbers bits 59–62 hold.
    static let most = 15

    init(_ locations: [(name: String, fileSystem: FileSystem)]) throws {
        guard locations.count <= Self.most else {
            throw VaultError(.invalidArgument, "one mount shows at most \(Self.most) locations, not \(locations.count)")
        }
        names = locations.map(\.name)
        self.locations = locations.map(\.fileSystem)
    }

    /// The location a number belongs to, and the number as it knows it; nil for the root's.
    private func split(_ number: UInt64) -> (index: Int, local: UInt64)? {
        let tag = (number & Self.mask) >> Self.shift
        guard tag > 0, Int(tag) <= locations.count else { return nil }
        return (Int(tag) - 1, number & ~Self.mask)
    }

    private func global(_ local: UInt64, _ index: Int) -> UInt64 { local | UInt64(index + 1) << Self.shift }

    /// `reply` of location `index` with its inode and handle numbers made the mount's.
    private func mapped(_ reply: Reply, _ index: Int) -> Reply {
        func map(_ attributes: Attributes) -> Attributes {
            var attributes = attributes
            attributes.inode = global(attributes.inode, index)
            return attributes
        }
        func map(_ entries: [DirectoryEntry]) -> [DirectoryEntry] {
            entries.map { DirectoryEntry(name: $0.name, inode: global($0.inode, index), kind: $0.kind) }
        }
        switch reply {
        case .entry(let attributes, let timeout): return .entry(map(attributes), timeout: timeout)
        case .attributes(let attributes, let timeout): return .attributes(map(attributes), timeout: timeout)
        case .opened(let handle, let keepCache, let directIO, let cacheDirectory):
            return .opened(
                handle: global(handle, index), keepCache: keepCache, directIO: directIO, cacheDirectory: cacheDirectory)
        case .directory(let entries, let offset, let maxSize):
            return .directory(map(entries), offset: offset, maxSize: maxSize)
        case .directoryPlus(let entries, let offset, let maxSize, let attributesOf):
            // Each entry's attributes are asked of its location by the number it knows.
            return .directoryPlus(map(entries), offset: offset, maxSize: maxSize) { entry in
                let local = DirectoryEntry(name: entry.name, inode: entry.inode & ~Self.mask, kind: entry.kind)
                return attributesOf(local).map { (map($0.0), $0.1) }
            }
        default: return reply
        }
    }

    /// Runs `body` on the location `number` belongs to, with the number it knows.
    private func routed(_ number: UInt64, _ body: (FileSystem, UInt64) -> Reply) -> Reply? {
        guard let (index, local) = split(number) else { return nil }
        return mapped(body(locations[index], local), index)
    }

    private var rootAttributes: Attributes {
        Attributes(
            inode: InodeTable.rootInode, kind: .directory, mode: 0o555, size: 4096, blocks: 8,
            time: created)
    }

    private var rootEntries: [DirectoryEntry] {
        [
            DirectoryEntry(name: FileName("."), inode: InodeTable.rootInode, kind: .directory),
            DirectoryEntry(name: FileName(".."), inode: InodeTable.rootInode, kind: .directory),
        ]
            + names.indices.map {
                DirectoryEntry(name: FileName(names[$0]), inode: global(InodeTable.rootInode, $0), kind: .directory)
            }
    }

    func lookup(parent: UInt64, name: FileName) -> Reply {
        if let reply = routed(parent, { $0.lookup(parent: $1, name: name) }) { return reply }
        guard parent == InodeTable.rootInode, let index = names.firstIndex(where: { FileName($0) == name }) else {
            return .refused(.notFound)
        }
        return mapped(locations[index].lookupRoot(), index)
    }

    func getattr(_ inode: UInt64) -> Reply {
        if let reply = routed(inode, { $0.getattr($1) }) { return reply }
        guard inode == InodeTable.rootInode else { return .refused(.notFound) }
        return .attributes(rootAttributes, timeout: FileSystem.shortTimeout)
    }

    func readlink(_ inode: UInt64) -> Reply { routed(inode) { $0.readlink($1) } ?? .refused(.invalid) }

    func opendir(_ inode: UInt64) -> Reply {
        if let reply = routed(inode, { $0.opendir($1) }) { return reply }
        guard inode == InodeTable.rootInode else { return .refused(.notFound) }
        return .opened(handle: 0, keepCache: false, directIO: false)
    }

    func readdir(handle: UInt64, offset: Int, size: Int) -> Reply {
        if let reply = routed(handle, { $0.readdir(handle: $1, offset: offset, size: size) }) { return reply }
        guard handle == 0 else { return .refused(.badHandle) }
        return .directory(rootEntries, offset: offset, maxSize: size)
    }

    func readdirplus(handle: UInt64, offset: Int, size: Int) -> Reply {
        if let reply = routed(handle, { $0.readdirplus(handle: $1, offset: offset, size: size) }) { return reply }
        guard handle == 0 else { return .refused(.badHandle) }
        return .directoryPlus(rootEntries, offset: offset, maxSize: size) { [self] entry in
            guard let (index, local) = split(entry.inode),
                case .attributes(let attributes, let timeout) = mapped(locations[index].getattr(local), index)
            else { return nil }
            return (attributes, timeout)
        }
    }

    func getxattr(_ inode: UInt64, name: String, size: Int) -> Reply {
        routed(inode) { $0.getxattr($1, name: name, size: size) } ?? .refused(.notSupported)
    }

    func listxattr(_ inode: UInt64, size: Int) -> Reply {
        routed(inode) { $0.listxattr($1, size: size) } ?? .refused(.notSupported)
    }

    func open(_ inode: UInt64, flags: Int32) -> Reply {
        routed(inode) { $0.open($1, flags: flags) } ?? .refused(.isADirectory)
    }

    func read(handle: UInt64, offset: Int64, size: Int) -> Reply {
        routed(handle) { $0.read(handle: $1, offset: offset, size: size) } ?? .refused(.badHandle)
    }

    func lseek(handle: UInt64, offset: Int64, whence: Int32) -> Reply {
        routed(handle) { $0.lseek(handle: $1, offset: offset, whence: whence) } ?? .refused(.badHandle)
    }

    func release(handle: UInt64) -> Reply { routed(handle) { $0.release(handle: $1) } ?? .done }

    /// The locations' filesystems together, each counted once (several locations may be
    /// folders of one disk).
    func statfs() -> Reply {
        var counted = Set<UInt>()
        var blocks: UInt64 = 0
        var files: UInt64 = 0
        for space in locations.compactMap({ $0.space() }) where counted.insert(space.filesystem).inserted {
            blocks += space.blocks
            files += space.files
        }
        return .statfs(blocks: blocks, free: 0, files: files)
    }

    func mkdir(parent: UInt64, name: String) -> Reply {
        routed(parent) { $0.mkdir(parent: $1, name: name) } ?? .refused(.notPermitted)
    }

    func rmdir(parent: UInt64, name: String) -> Reply {
        routed(parent) { $0.rmdir(parent: $1, name: name) } ?? .refused(.readOnly)
    }

    func write(handle: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer) -> Reply {
        routed(handle) { $0.write(handle: $1, offset: offset, bytes: bytes) } ?? .refused(.badHandle)
    }

    func flush(handle: UInt64) -> Reply { routed(handle) { $0.flush(handle: $1) } ?? .refused(.badHandle) }

    func setattr(_ inode: UInt64, newSize: Int64?) -> Reply {
        routed(inode) { $0.setattr($1, newSize: newSize) } ?? .refused(.readOnly)
    }

    func fallocate(handle: UInt64) -> Reply { routed(handle) { $0.fallocate(handle: $1) } ?? .refused(.badHandle) }

    func start() { locations.forEach { $0.start() } }

    func shutdown() { locations.forEach { $0.shutdown() } }
}

extension FileSystem {
    /// The root's entry, as a lookup of it from above answers (the locations' root).
    func lookupRoot() -> Reply {
        guard case .attributes(let attributes, let timeout) = getattr(InodeTable.rootInode) else {
            return .refused(.notFound)
        }
        return .entry(attributes, timeout: timeout)
    }
}
