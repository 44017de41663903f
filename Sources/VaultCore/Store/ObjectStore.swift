internal import CSupport
import Foundation
import Glibc

/// Where a repository keeps what restoring needs: chunks, maps, manifests. One small protocol
/// for every backend; nothing above it knows which one it has. Keys are relative paths
/// (`chunks/ab/ab12…`, `maps/<point>/<disk>.map`, `manifests/points/<id>.json`).
public protocol ObjectStore: Sendable {
    /// Where the objects are, for messages: a folder's path or an `s3://` URL.
    var location: String { get }
    /// How many writers a backup keeps busy: one per core for a local disk, more for a
    /// store whose requests mostly wait on the network.
    var writers: Int { get }
    /// How many bytes opening an object for ranged reads fetches at once: just a chunk's
    /// index from a local disk; more from a store where each request costs a round trip, so
    /// a small chunk comes whole and a large one with its first frames.
    var openPrefix: Int { get }
    /// Whether other hosts may write this store at the same time: its locks must then be
    /// leases kept in the store itself, listing it costs, and unused chunks wait out a grace
    /// period before they go, as a backup on another host may be about to use them.
    var isShared: Bool { get }
    /// Makes what objects under `prefixes` need before the first is stored (the folders of
    /// a folder store); nothing where keys need no preparing.
    func prepare(prefixes: [String]) throws
    /// Local files a dead writer left half-written under `prefix`, older than `age` seconds
    /// at `now`: a folder store's temporaries. None where a write is whole or absent.
    func staleTemporaries(prefix: String, olderThan age: Double, now: Double) -> [String]
    /// Whether an object is stored under `key`.
    func exists(_ key: String) throws -> Bool
    /// Stores `bytes` under `key` unless an object is already there, durably before it is
    /// visible under its name; false when one was there (it is left as it was).
    func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool
    /// Stores `bytes` under `key`, replacing what was there; readers see the old object or
    /// the new, never a mix. `durable` false lets a backend defer flushing to `flush()`.
    func put(_ key: String, _ bytes: [UInt8], durable: Bool) throws
    /// The whole object, or nil when there is none. One larger than `limit` bytes is refused
    /// as damaged before it is read.
    func get(_ key: String, limit: Int) throws -> [UInt8]?
    /// Opens an object for ranged reads, with its first `prefix` bytes (fewer when it is
    /// shorter); nil when there is none.
    func open(_ key: String, prefix: Int) throws -> (reader: ObjectReader, prefix: [UInt8])?
    /// Removes an object; one that is not there is not an error.
    func delete(_ key: String) throws
    /// Every object whose key starts with `prefix`, with its size, in no particular order.
    func list(prefix: String) throws -> [StoredObject]
    /// Makes every object stored with `durable: false` durable.
    func flush() throws
}

/// One object a listing found.
public struct StoredObject: Sendable, Equatable {
    public var key: String
    public var size: Int64
    /// What changes whenever the object is replaced (an S3 ETag); nil where not known.
    public var tag: String? = nil
}

/// An object opened for ranged reads.
public protocol ObjectReader: Sendable {
    /// The object's length in bytes.
    var size: Int { get }
    /// Reads `range` (within `size`) into `destination`, which must be exactly as long.
    func read(_ range: Range<Int>, into destination: UnsafeMutableRawBufferPointer) throws
    func close()
}

/// The objects of a repository in a local folder: each key a file below `root`. A new object
/// is written to a temporary name, synced, then linked into place (never over another), so
/// a power loss never leaves a short object under a real name.
public struct DirectoryStore: ObjectStore {
    public let root: String
    let modes: FileModes
    public var location: String { root }
    public var writers: Int { max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8)) }
    public var openPrefix: Int { ChunkFile.indexPrefix }
    /// A folder is one host's: others reach it only through that host (or a network
    /// filesystem that gives the same locks).
    public var isShared: Bool { false }

    public func prepare(prefixes: [String]) throws {
        for prefix in prefixes { try Posix.makeDirectory(path(prefix), mode: modes.directory) }
    }

    init(root: String, modes: FileModes) {
        self.root = root
        self.modes = modes
    }

    func path(_ key: String) -> String { "\(root)/\(key)" }

    /// Creates the folders that hold `key`'s file when they are missing.
    private func makeParents(of key: String) throws {
        var folder = ""
        for part in key.split(separator: "/").dropLast() {
            folder += folder.isEmpty ? String(part) : "/\(part)"
            if !Posix.isDirectory(path(folder)) { try Posix.makeDirectory(path(folder), mode: modes.directory) }
        }
    }

    public func exists(_ key: String) throws -> Bool { Posix.exists(path(key)) }

    public func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        let final = path(key)
        if Posix.exists(final) { return false }
        let temporary = Posix.temporaryName(for: final)
        let fd: Int32
        do {
            fd = try Posix.createFile(temporary, mode: modes.sealed, what: "cannot create")
        } catch let error as VaultError where error.code == .notFound {
            try makeParents(of: key)
            fd = try Posix.createFile(temporary, mode: modes.sealed, what: "cannot create")
        }
        do {
            try bytes.withUnsafeBytes { try Posix.writeAll(fd, $0, path: temporary) }
            // Durable before it has its name: a later backup trusts any chunk it finds by name,
            // so one cut short by a power loss must never appear under it.
            if fsync(fd) != 0 { throw Posix.error("cannot sync", temporary) }
            close(fd)
            FaultInjection.reached("chunk-written")
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        defer { unlink(temporary) }
        if link(temporary, final) != 0 {
            if errno == EEXIST { return false }
            throw Posix.error("cannot store", final)
        }
        FaultInjection.reached("chunk-linked")
        return true
    }

    public func put(_ key: String, _ bytes: [UInt8], durable: Bool) throws {
        do {
            try Posix.writeFileAtomically(path(key), bytes, mode: modes.file, sync: durable)
        } catch let error as VaultError where error.code == .notFound {
            try makeParents(of: key)
            try Posix.writeFileAtomically(path(key), bytes, mode: modes.file, sync: durable)
        }
    }

    public func get(_ key: String, limit: Int) throws -> [UInt8]? {
        do {
            return try Posix.readFile(path(key), limit: limit)
        } catch let error as VaultError where error.code == .notFound {
            return nil
        }
    }

    public func open(_ key: String, prefix: Int) throws -> (reader: ObjectReader, prefix: [UInt8])? {
        let file = path(key)
        let fd: Int32
        do {
            fd = try Posix.open(file, O_RDONLY)
        } catch let error as VaultError where error.code == .notFound {
            return nil
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let error = Posix.error("cannot stat", file)
            Glibc.close(fd)
            throw error
        }
        let reader = FileReader(fd: fd, path: file, size: Int(st.st_size))
        do {
            let count = min(prefix, reader.size)
            let bytes = try [UInt8](unsafeUninitializedCapacity: count) { raw, initialized in
                try reader.read(0..<count, into: UnsafeMutableRawBufferPointer(raw))
                initialized = count
            }
            return (reader, bytes)
        } catch {
            reader.close()
            throw error
        }
    }

    public func delete(_ key: String) throws {
        if unlink(path(key)) != 0 && errno != ENOENT { throw Posix.error("cannot remove", path(key)) }
        // A map folder goes with its last map.
        let parent = String(key.split(separator: "/").dropLast().joined(separator: "/"))
        if parent.hasPrefix("maps/") { rmdir(path(parent)) }
    }

    public func list(prefix: String) throws -> [StoredObject] {
        // The folder the prefix names (or lies in), walked below; temporaries are left out.
        let folder =
            prefix.hasSuffix("/")
            ? String(prefix.dropLast()) : String(prefix.split(separator: "/").dropLast().joined(separator: "/"))
        var found: [StoredObject] = []
        func walk(_ relative: String) {
            for name in Posix.listDirectory(path(relative)) where !name.contains(".tmp-") {
                let key = relative.isEmpty ? name : "\(relative)/\(name)"
                var st = stat()
                guard lstat(path(key), &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    walk(key)
                } else if (st.st_mode & S_IFMT) == S_IFREG && key.hasPrefix(prefix) {
                    found.append(StoredObject(key: key, size: Int64(st.st_size)))
                }
            }
        }
        walk(folder)
        return found
    }

    public func flush() throws {
        let fd = try Posix.open(root, O_RDONLY | O_DIRECTORY)
        defer { Glibc.close(fd) }
        if vfs_syncfs(fd) != 0 { throw Posix.error("cannot sync", root) }
    }

    /// Temporary files writers left in the folders holding `prefix`, older than `age` seconds.
    public func staleTemporaries(prefix: String, olderThan age: Double, now: Double) -> [String] {
        var folders = [prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix]
        var stale: [String] = []
        while let folder = folders.popLast() {
            stale += Posix.staleTemporaries(in: path(folder), olderThan: age, now: now)
            folders += Posix.listDirectory(path(folder)).filter { !$0.contains(".tmp-") }.map { "\(folder)/\($0)" }
                .filter { Posix.isDirectory(path($0)) }
        }
        return stale
    }
}

/// A file opened for ranged reads.
struct FileReader: ObjectReader {
    let fd: Int32
    let path: String
    let size: Int

    func read(_ range: Range<Int>, into destination: UnsafeMutableRawBufferPointer) throws {
        precondition(destination.count == range.count)
        let n = try Posix.pread(fd, destination.baseAddress!, range.count, Int64(range.lowerBound), path: path)
        guard n == range.count else { throw VaultError(.corrupt, "\(path) is truncated") }
    }

    func close() { Glibc.close(fd) }
}
