import Synchronization
import VaultCore

/// A filesystem shown under `files/`, with its directories kept once listed (they never
/// change), so lookups and repeated listings cost a dictionary access.
public final class Volume: Sendable {
    public let name: String
    public let reader: any FilesystemReader
    private let directories = Mutex(DirectoryCache())
    /// Where the listings' memory is counted (the mount's chunk cache), if anywhere.
    private let memory: ChunkCache?
    /// Bytes of listings kept before the oldest are dropped.
    let listingBudget: Int
    /// Extended attributes by inode: `ls -l` asks for two on every file, and most have none.
    private let xattrs = Mutex<[UInt64: [(name: String, value: [UInt8])]]>([:])
    static let xattrBudget = 1 << 18

    /// Bytes of listings a volume keeps without a budget to count them against.
    static let defaultListingBudget = 64 << 20

    /// `memory` is the budget the listings and the files' extent maps are counted against (a
    /// quarter of it at most is kept per volume for each).
    init(name: String, reader: any FilesystemReader, memory: ChunkCache? = nil) {
        self.name = name
        self.reader = reader
        self.memory = memory
        listingBudget = memory.map { max($0.budget / 4, 1 << 20) } ?? Self.defaultListingBudget
        if let memory, let ext = reader as? Ext2Filesystem { ext.extentMaps.use(budget: listingBudget, memory: memory) }
    }

    deinit { memory?.charge(-directories.withLock { $0.bytes }) }

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
    /// A path never leaves the filesystem: a `..` part, or a NUL, is refused, whoever gave it.
    public func resolve(_ path: String) throws -> UInt64 {
        guard !path.utf8.contains(0) else { throw VaultError(.invalidArgument, "a path inside a point holds no NUL") }
        var inode = rootInode
        let parts = path.split(separator: "/")
        if parts.contains("..") {
            throw VaultError(
                .invalidArgument, "\(path): a path inside a point has no '..' part; name the folder from /")
        }
        for part in parts where part != "." {
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
        let change = directories.withLock { $0.insert(cached, for: directory, budget: allowance(keeping: $0.bytes)) }
        memory?.charge(change)
        return cached
    }
}

extension Volume {
    /// Bytes of listings this volume may keep now: its own budget, and within the half of the
    /// mount's memory that all volumes' listings and maps share (`own` bytes are this
    /// volume's), so many disks and partitions do not each take a quarter.
    func allowance(keeping own: Int) -> Int {
        guard let memory else { return listingBudget }
        return Volume.share(of: memory, own: own, budget: listingBudget)
    }

    /// What one cache of `budget` bytes that holds `own` may keep when every cache counted
    /// against `memory` shares half of it: at least 1 MiB.
    static func share(of memory: ChunkCache, own: Int, budget: Int) -> Int {
        let others = max(0, memory.chargedBytes - own)
        return min(budget, max(1 << 20, memory.budget / 2 - others))
    }
}

/// Directory listings by inode, least recently used dropped first beyond a budget of bytes.
struct DirectoryCache {
    struct Listing {
        let listing: DirectoryListing
        let byName: [FileName: UInt64]
        /// An estimate of what the listing takes in memory: each entry in the list and in the
        /// index, with its name's own allocation.
        let bytes: Int
        var entries: [FileEntry] { listing.entries }
        static let entryCost = 128

        init(listing: DirectoryListing, byName: [FileName: UInt64]) {
            self.listing = listing
            self.byName = byName
            bytes = (listing.entries + listing.unusable).reduce(0) { $0 + Self.entryCost + $1.name.bytes.count }
        }
    }

    private var listings = LRUCache<UInt64, Listing>()
    /// What the listings kept take, as `Listing.bytes` counts it.
    var bytes: Int { listings.cost }

    mutating func listing(_ directory: UInt64) -> Listing? { listings.value(for: directory) }

    /// Keeps a listing, dropping the oldest others down to half of `budget` bytes when over
    /// it (one sort per half-budget of new names rather than one per listing); returns by
    /// how many bytes what is kept changed.
    mutating func insert(_ listing: Listing, for directory: UInt64, budget: Int) -> Int {
        guard !listings.contains(directory) else { return 0 }
        let before = bytes
        listings.insert(listing, for: directory, cost: listing.bytes)
        if bytes > budget { listings.evict(downTo: budget / 2) { $0 == directory } }
        return bytes - before
    }
}
