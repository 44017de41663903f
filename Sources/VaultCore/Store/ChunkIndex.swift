import Crypto
import Foundation
import Glibc
import Synchronization

/// The ids of the chunks a shared object store holds, kept in the repository's local state
/// folder, so that a backup dedups without asking the store about each chunk.
///
/// It never names a chunk the store lacks: an id goes in only once the store has answered
/// that it holds the chunk, and before each backup (while no collection can run on any host)
/// `catchUp` takes out what collections on every host removed, from their removal records
/// (`RemovalRecords`). A host that missed records pruned since, finds a gap in them or fewer
/// than it took in (the store was replaced), or whose index is missing, damaged or of another
/// store, rebuilds it from one listing of the chunks.
final class ChunkIndex: Sendable {
    private static let fileTag = "VFSIDX1\n"

    private struct State {
        var ids = Set<ChunkHash>()
        /// The newest removal record taken in; nil until `catchUp` has run.
        var generation: UInt64?
        /// The index file, open for appending new ids; -1 when not open.
        var fd: Int32 = -1
    }

    private let path: String
    /// Tells this store's index from another's that was left under the same path.
    private let owner: [UInt8]
    private let state = Mutex(State())

    /// `store` names the store the index is of: its location and the id made when it was
    /// laid out, so a bucket made again under the same name (by `sync`) is not taken for it.
    init(path: String, store: String) {
        self.path = path
        owner = Array(SHA256.hash(data: Array(store.utf8)))
    }

    deinit { state.withLock { if $0.fd >= 0 { Glibc.close($0.fd) } } }

    /// Whether the store is known to hold `hash`. Meaningful after `catchUp`; before it,
    /// always false.
    func contains(_ hash: ChunkHash) -> Bool { state.withLock { $0.generation != nil && $0.ids.contains(hash) } }

    /// Records that the store holds `hash` (it has just stored it, or said it had it).
    func insert(_ hash: ChunkHash) {
        state.withLock { state in
            guard state.generation != nil, state.ids.insert(hash).inserted, state.fd >= 0 else { return }
            // Losing an append costs a re-upload later, never a wrong answer.
            let bytes = hash.bytes
            let written = bytes.withUnsafeBytes { raw in
                Posix.retrying { Glibc.write(state.fd, raw.baseAddress, raw.count) }
            }
            if written != bytes.count {
                Glibc.close(state.fd)
                state.fd = -1
            }
        }
    }

    /// Brings the index up to date with the removal records in `objects`; called while no
    /// collection can run. Rebuilds it from a listing of `chunks` when it cannot be trusted.
    /// The store is asked with the index unlocked, so other backups go on meanwhile.
    func catchUp(_ objects: any ObjectStore, chunks: ChunkStore) throws {
        let generations = try RemovalRecords.generations(in: objects)
        let newest = generations.last ?? 0
        let known: UInt64? = state.withLock { state in
            if state.generation == nil, let (generation, ids) = load() {
                state.generation = generation
                state.ids = ids
            }
            if state.generation == newest && state.fd < 0 { state.fd = openForAppend() }
            return state.generation
        }
        if known == newest { return }
        let removed = try removed(since: known, generations: generations, in: objects)
        let listed = removed == nil ? Set(try chunks.allChunks().map(\.hash)) : []
        state.withLock { state in
            if let removed { state.ids.subtract(removed) } else { state.ids = listed }
            state.generation = newest
            if state.fd >= 0 { Glibc.close(state.fd) }
            save(state.ids, generation: newest)
            state.fd = openForAppend()
        }
    }

    /// The ids removed after generation `known`, up to the newest; nil when the records cannot
    /// tell (nothing known, a gap, a damaged record, or no newer records than known).
    private func removed(since known: UInt64?, generations: [UInt64], in objects: any ObjectStore) throws
        -> [ChunkHash]?
    {
        guard let known, let newest = generations.last, known < newest,
            generations.filter({ $0 > known }) == Array((known + 1)...newest)
        else { return nil }
        var removed: [ChunkHash] = []
        for generation in (known + 1)...newest {
            guard let ids = try RemovalRecords.read(generation, from: objects) else { return nil }
            removed += ids
        }
        return removed
    }

    /// The file's generation and ids, or nil when it is missing, damaged or another store's.
    private func load() -> (UInt64, Set<ChunkHash>)? {
        guard let bytes = try? Posix.readFile(path, limit: 1 << 34) else { return nil }
        let header = Self.fileTag.utf8.count + 8 + owner.count
        guard bytes.count >= header, bytes.starts(with: Self.fileTag.utf8),
            Array(bytes[(header - owner.count)..<header]) == owner
        else { return nil }
        var generation: UInt64 = 0
        for byte in bytes[Self.fileTag.utf8.count..<(Self.fileTag.utf8.count + 8)] {
            generation = generation << 8 | UInt64(byte)
        }
        var ids = Set<ChunkHash>()
        var at = header
        // A torn last append is left out.
        while at + ChunkHash.byteCount <= bytes.count {
            ids.insert(ChunkHash(bytes: bytes[at..<(at + ChunkHash.byteCount)]))
            at += ChunkHash.byteCount
        }
        return (generation, ids)
    }

    /// Replaces the file; a failure leaves the index in memory only (the next process rebuilds).
    private func save(_ ids: Set<ChunkHash>, generation: UInt64) {
        var bytes = Array(Self.fileTag.utf8)
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: generation >> (56 - 8 * $0)) }
        bytes += owner
        bytes.reserveCapacity(bytes.count + ids.count * ChunkHash.byteCount)
        for id in ids { bytes += id.bytes }
        try? Posix.writeFileAtomically(path, bytes, mode: 0o600, sync: false)
    }

    /// The file open for appending, or -1 (appends are then skipped: only a cache is lost).
    private func openForAppend() -> Int32 { (try? Posix.open(path, O_WRONLY | O_APPEND | O_NOFOLLOW)) ?? -1 }
}
