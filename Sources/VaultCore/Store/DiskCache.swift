import Foundation
import Glibc
import Synchronization

/// Chunks of a remote store kept in a local folder, bounded in bytes, for the mount
/// (`-o cache_dir=…,cache_disk_size=…`): a chunk read once is read from the local disk
/// afterwards, even while the store cannot be reached. Chunks are kept as they are stored
/// (compressed, and sealed in an encrypted repository), so the folder holds no plain data.
/// The least recently used go first once the folder would outgrow its size. A damaged copy
/// fails its checks like a damaged chunk in the store; the chunk store then drops it and
/// reads the store again (`evict`).
///
/// Everything but opening a chunk goes to the store behind it unchanged.
final class DiskCachedStore: ObjectStore {
    typealias Settings = DiskCacheSettings

    let inner: any ObjectStore
    let settings: Settings
    /// Cached keys, each costing its size.
    private let state = Mutex(LRUCache<String, Void>())

    var location: String { inner.location }
    var writers: Int { inner.writers }
    var openPrefix: Int { inner.openPrefix }
    var isShared: Bool { inner.isShared }
    func prepare(prefixes: [String]) throws { try inner.prepare(prefixes: prefixes) }
    func staleTemporaries(prefix: String, olderThan age: Double, now: Double) -> [String] {
        inner.staleTemporaries(prefix: prefix, olderThan: age, now: now)
    }

    /// Makes the folder (owner-only) when missing and takes in what an earlier mount left,
    /// oldest first.
    init(_ inner: any ObjectStore, settings: Settings) throws {
        self.inner = inner
        self.settings = settings
        try Posix.makeDirectory(settings.directory, mode: 0o700)
        guard chmod(settings.directory, 0o700) == 0 else {
            throw Posix.error("cannot make owner-only", settings.directory)
        }
        var found: [(key: String, size: Int64, time: Int)] = []
        for fan in Posix.listDirectory(settings.directory) where fan.count == 2 {
            for name in Posix.listDirectory("\(settings.directory)/\(fan)") {
                let path = "\(settings.directory)/\(fan)/\(name)"
                var st = stat()
                guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
                if name.contains(".tmp-") || ChunkHash(hex: name) == nil {
                    unlink(path)
                    continue
                }
                found.append(("\(ChunkStore.prefix)\(fan)/\(name)", Int64(st.st_size), st.st_mtim.tv_sec))
            }
        }
        state.withLock { files in
            for file in found.sorted(by: { $0.time < $1.time }) {
                files.insert((), for: file.key, cost: Int(file.size))
            }
        }
        trim()
    }

    private func path(_ key: String) -> String {
        "\(settings.directory)/\(key.dropFirst(ChunkStore.prefix.count))"
    }

    func exists(_ key: String) throws -> Bool { try inner.exists(key) }
    func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool { try inner.putIfAbsent(key, bytes) }
    func put(_ key: String, _ bytes: [UInt8], durable: Bool) throws { try inner.put(key, bytes, durable: durable) }
    func get(_ key: String, limit: Int) throws -> [UInt8]? { try inner.get(key, limit: limit) }
    func list(prefix: String) throws -> [StoredObject] { try inner.list(prefix: prefix) }
    func flush() throws { try inner.flush() }

    func delete(_ key: String) throws {
        _ = evict(key)
        try inner.delete(key)
    }

    /// A chunk from the folder when it is there; else the whole object from the store, kept
    /// for next time. Other objects come from the store as asked.
    func open(_ key: String, prefix: Int) throws -> (reader: ObjectReader, prefix: [UInt8])? {
        guard key.hasPrefix(ChunkStore.prefix) else { return try inner.open(key, prefix: prefix) }
        let cached = state.withLock { $0.value(for: key) != nil }
        if cached {
            let local = DirectoryStore(root: settings.directory, modes: .ownerOnly)
            if let opened = try? local.open(String(key.dropFirst(ChunkStore.prefix.count)), prefix: prefix) {
                return opened
            }
            _ = evict(key)
        }
        guard let bytes = try inner.get(key, limit: ChunkFile.maxFileSize) else { return nil }
        keep(key, bytes)
        return (MemoryReader(bytes: bytes), Array(bytes.prefix(prefix)))
    }

    /// Drops the local copy of `key`; false when there was none.
    @discardableResult
    func evict(_ key: String) -> Bool {
        let had = state.withLock { $0.remove(key) != nil }
        if had { unlink(path(key)) }
        return had
    }

    /// Writes a copy (under a temporary name, then renamed; no sync: it is only a cache). A
    /// failure (a full disk) just leaves it out.
    private func keep(_ key: String, _ bytes: [UInt8]) {
        guard Int64(bytes.count) <= settings.bytes else { return }
        let file = path(key)
        let folder = (file as NSString).deletingLastPathComponent
        if !Posix.isDirectory(folder) { try? Posix.makeDirectory(folder, mode: 0o700) }
        do {
            try Posix.writeFileAtomically(file, bytes, mode: 0o600, sync: false)
        } catch {
            return
        }
        state.withLock { $0.insert((), for: key, cost: bytes.count) }
        trim()
    }

    /// Over its size, drops the least recently used down to 90% of it.
    private func trim() {
        let limit = Int(clamping: settings.bytes)
        let victims = state.withLock { files in
            files.cost > limit ? files.evict(downTo: limit - limit / 10).map(\.key) : []
        }
        for key in victims { unlink(path(key)) }
    }

    /// Bytes the folder holds now.
    var cachedBytes: Int64 { Int64(state.withLock { $0.cost }) }
}

/// Where a disk cache of chunks is and how many bytes it may hold.
public struct DiskCacheSettings: Sendable, Equatable {
    public var directory: String
    public var bytes: Int64

    public init(directory: String, bytes: Int64) {
        self.directory = directory
        self.bytes = bytes
    }
}

/// An object already fetched whole, read from memory.
struct MemoryReader: ObjectReader {
    let bytes: [UInt8]
    var size: Int { bytes.count }

    func read(_ range: Range<Int>, into destination: UnsafeMutableRawBufferPointer) throws {
        precondition(destination.count == range.count)
        bytes[range].withUnsafeBytes { destination.copyMemory(from: $0) }
    }

    func close() {}
}
