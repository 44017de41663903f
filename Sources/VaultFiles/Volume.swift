import Synchronization
import VaultCore

/// A filesystem shown under `files/`, with its directories kept once listed (they never
/// change), so lookups and repeated listings cost a dictionary access.
public final class Volume: Sendable {
    public let name: String
    public let reader: any FilesystemReader
    private let directories = Mutex(DirectoryCache())
    /// Extended attributes by inode: `ls -l` asks for two on every file, and most have none.
    private let xattrs = Mutex<[UInt64: [(name: String, value: [UInt8])]]>([:])
    static let xattrBudget = 1 << 18

    /// Names kept across all directories before the oldest listings are dropped.
    static let entryBudget = 1 << 20

    init(name: String, reader: any FilesystemReader) {
        self.name = name
        self.reader = reader
    }

    public var rootInode: UInt64 { reader.rootInode }

    /// A directory's entries (without `.` and `..`), in the order the filesystem keeps them.
    public func entries(_ directory: UInt64) throws -> [FileEntry] {
        try cached(directory).listing.entries
    }

    /// A directory's entries and the count of those left out for names no entry may have.
    public func listing(_ directory: UInt64) throws -> DirectoryListing {
        try cached(directory).listing
    }

    /// The inode a name in a directory refers to, or nil when there is no such name.
    public func child(of directory: UInt64, named name: FileName) throws -> UInt64? {
        try cached(directory).byName[name]
    }

    /// A file's extended attributes (names with `user.`, `system.` ... prefixes), read once.
    public func extendedAttributes(_ inode: UInt64) throws -> [(name: String, value: [UInt8])] {
        if let cached = xattrs.withLock({ $0[inode] }) { return cached }
        let list = try reader.attributeNames(inode).map { (name: $0, value: try reader.attribute(inode, named: $0)) }
        xattrs.withLock { cache in
            if cache.count >= Self.xattrBudget { cache.removeAll(keepingCapacity: true) }
            cache[inode] = list
        }
        return list
    }

    /// Follows a path of names from the root (`/etc/hostname`); symlinks are not followed.
    public func resolve(_ path: String) throws -> UInt64 {
        var inode = rootInode
        for part in path.split(separator: "/") where part != "." {
            guard try reader.attributes(inode).kind == .directory else {
                throw VaultError(.invalidArgument, "\(path): \(part) lies below something that is not a folder")
            }
            guard let next = try child(of: inode, named: FileName(String(part))) else {
                throw VaultError(.notFound, "no \(path) in \(name)")
            }
            inode = next
        }
        return inode
    }

    private func cached(_ directory: UInt64) throws -> DirectoryCache.Listing {
        if let cached = directories.withLock({ $0.listing(directory) }) { return cached }
        let listing = try reader.entries(directory)
        var byName: [FileName: UInt64] = [:]
        for entry in listing.entries { byName[entry.name] = entry.inode }
        let cached = DirectoryCache.Listing(listing: listing, byName: byName)
        directories.withLock { $0.insert(cached, for: directory, budget: Self.entryBudget) }
        return cached
    }
}

/// Directory listings by inode, least recently used dropped first beyond a budget of names.
struct DirectoryCache {
    struct Listing {
        var listing: DirectoryListing
        var byName: [FileName: UInt64]
        var entries: [FileEntry] { listing.entries }
    }

    private var listings: [UInt64: (listing: Listing, tick: UInt64)] = [:]
    private var names = 0
    private var tick: UInt64 = 0

    mutating func listing(_ directory: UInt64) -> Listing? {
        guard let entry = listings[directory] else { return nil }
        tick += 1
        listings[directory]!.tick = tick
        return entry.listing
    }

    mutating func insert(_ listing: Listing, for directory: UInt64, budget: Int) {
        guard listings[directory] == nil else { return }
        tick += 1
        listings[directory] = (listing, tick)
        names += listing.entries.count
        if names > budget {
            // Drop the older half at once, so a tree larger than the budget costs one sort
            // per half-budget of new names rather than one per listing.
            let sorted = listings.sorted { $0.value.tick < $1.value.tick }
            for (key, value) in sorted.prefix(sorted.count / 2) where key != directory {
                listings[key] = nil
                names -= value.listing.entries.count
            }
        }
    }
}
