import Dispatch
import Foundation
import Synchronization

/// Decoded frames of chunks (64 KiB each) shared by every reader of a repository, bounded
/// by a byte budget and evicting the least recently used. A small read decodes only the
/// frames it touches; concurrent requests for one frame decode it once. The budget covers
/// loads in flight too: each load makes room for the stored bytes it reads and the frames it
/// decodes before it reads, evicting what the cache holds, and waits while loads in flight
/// already take the whole budget (one alone may exceed it). So the frames held and being
/// decoded stay within the budget whatever the number of readers.
public final class ChunkCache: Sendable {
    struct Key: Hashable {
        var hash: ChunkHash
        var frame: Int
    }

    /// Frames being decoded by one load; waiters block on `done` and read `result` after it
    /// is signalled.
    private final class Pending: @unchecked Sendable {
        // Written once by the loading thread before `done.leave()`, read only after `wait()`.
        var result: Result<[Int: [UInt8]], VaultError> = .failure(VaultError(.io, "chunk load did not finish"))
        let done = DispatchGroup()
    }

    private struct State {
        var entries: [Key: (data: [UInt8], tick: UInt64)] = [:]
        var pending: [Key: Pending] = [:]
        /// Chunks read-ahead has queued and not yet started on.
        var queued = Set<ChunkHash>()
        /// Bytes of the frames held.
        var bytes = 0
        /// Bytes set aside for loads in flight.
        var reserved = 0
        /// The most `reserved` has been.
        var peakReserved = 0
        /// Bytes other caches of this process hold against the same budget (directory
        /// listings of the files inside points): frames give way to them.
        var charged = 0
        var tick: UInt64 = 0
    }

    public let budget: Int
    private let store: ChunkStore
    private let state = Mutex(State())
    /// Read-ahead runs on a few threads of its own, whatever the number of readers: the
    /// store's number of writers, one per core (up to 8) for a local store, so it never
    /// starves the reads that wait, and 8 for one across a network, where each mostly waits
    /// for its answer.
    private let prefetchers: WorkerPool
    private let decoded = Atomic<Int>(0)
    /// Where loads wait for loads in flight to give their room back. Its lock is held from a
    /// waiter's check of `reserved` to its wait, and taken by a load giving room back before
    /// it signals, so no wake-up is missed.
    private let room = NSCondition()

    /// Loads from the store so far (each file read, not each request).
    var decodes: Int { decoded.load(ordering: .relaxed) }
    /// Bytes of decoded frames held now.
    var cachedBytes: Int { state.withLock { $0.bytes } }
    /// Bytes set aside for loads in flight now.
    var reservedBytes: Int { state.withLock { $0.reserved } }
    /// The most bytes ever set aside for loads in flight at once.
    var peakReservedBytes: Int { state.withLock { $0.peakReserved } }
    /// Bytes other caches hold against this budget now.
    public var chargedBytes: Int { state.withLock { $0.charged } }

    /// Counts `bytes` (negative: gives them back) that another cache of this process holds
    /// against the memory budget, so the daemon as a whole stays within `cache_size`: frames
    /// are evicted to make room for them.
    public func charge(_ bytes: Int) {
        state.withLock { state in
            state.charged = max(0, state.charged + bytes)
            evictIfOver(&state)
        }
    }

    /// `prefetchThreads` is how many chunks read-ahead loads at once; by default the store's
    /// number of writers (one per core for a local disk, more for an object store).
    public init(store: ChunkStore, budget: Int, prefetchThreads: Int? = nil) {
        self.store = store
        self.budget = max(budget, 1 << 20)
        prefetchers = WorkerPool(threads: prefetchThreads ?? store.objects.writers)
    }

    /// Frames `frames` of chunk `hash` (`length` plain bytes), decoded, in order.
    public func frames(_ hash: ChunkHash, length: Int, _ frames: Range<Int>) throws -> [[UInt8]] {
        guard frames.lowerBound >= 0, frames.upperBound <= ChunkFile.frameCount(length) else {
            throw VaultError.invalid("frames \(frames) of a \(length)-byte chunk")
        }
        var found: [Int: [UInt8]] = [:]
        var waits: [Pending] = []
        var missing: [Int] = []
        // Made only on a miss: a read served from the cache allocates no pending load.
        var claim: Pending?
        state.withLock { state in
            state.tick += 1
            for i in frames {
                let key = Key(hash: hash, frame: i)
                if let entry = state.entries[key] {
                    state.entries[key] = (entry.data, state.tick)
                    found[i] = entry.data
                } else if let pending = state.pending[key] {
                    if !waits.contains(where: { $0 === pending }) { waits.append(pending) }
                } else {
                    let mine = claim ?? Pending()
                    // Entered before any waiter can find it, so a waiter always waits.
                    if claim == nil { mine.done.enter() }
                    claim = mine
                    state.pending[key] = mine
                    missing.append(i)
                }
            }
        }
        if let mine = claim {
            load(
                hash, length: length, frames: missing.min()!..<(missing.max()! + 1), pending: mine,
                claimed: Set(missing))
            for (i, data) in try mine.result.get() where frames.contains(i) { found[i] = data }
        }
        for pending in waits {
            pending.done.wait()
            for (i, data) in try pending.result.get() where frames.contains(i) && found[i] == nil { found[i] = data }
        }
        // A frame evicted between another loader's insert and this read is loaded again.
        return try frames.map { i in
            if let data = found[i] { return data }
            return try self.frames(hash, length: length, i..<(i + 1))[0]
        }
    }

    /// Decodes frames and publishes them: to the cache, and to waiters through `pending`.
    private func load(_ hash: ChunkHash, length: Int, frames: Range<Int>, pending: Pending, claimed: Set<Int>) {
        decoded.add(1, ordering: .relaxed)
        // Room for the stored bytes read and the frames decoded, made before they are.
        let reserve = Self.reservation(frames)
        makeRoom(reserve)
        let result: Result<[Int: [UInt8]], VaultError>
        do {
            let loaded = try store.loadFrames(hash, length: length, frames: frames)
            result = .success(Dictionary(loaded.map { ($0.index, $0.bytes) }, uniquingKeysWith: { a, _ in a }))
        } catch let error as VaultError {
            result = .failure(error)
        } catch {
            result = .failure(VaultError(.io, "chunk \(hash)", cause: error))
        }
        pending.result = result
        state.withLock { state in
            state.reserved -= reserve
            for i in claimed { state.pending[Key(hash: hash, frame: i)] = nil }
            if case .success(let decoded) = result {
                var keys = Set<Key>()
                for (i, data) in decoded {
                    let key = Key(hash: hash, frame: i)
                    if let old = state.entries[key] { state.bytes -= old.data.count }
                    state.entries[key] = (data, state.tick)
                    state.bytes += data.count
                    keys.insert(key)
                }
                // Once per load, sparing what it brought: a load keeps its frames even when
                // others' reservations fill the budget.
                evictIfOver(&state, sparing: keys)
            }
        }
        room.lock()
        room.broadcast()
        room.unlock()
        pending.done.leave()
    }

    /// Sets `bytes` aside for a load, evicting frames held to make room, once loads in flight
    /// leave room for it (at once when none is in flight, however large). A waiting load holds
    /// no room, and loads in flight wait for nothing but the store, so every wait ends.
    private func makeRoom(_ bytes: Int) {
        room.lock()
        defer { room.unlock() }
        while !state.withLock({ state in
            guard state.reserved == 0 || state.reserved + bytes <= budget else { return false }
            state.reserved += bytes
            state.peakReserved = max(state.peakReserved, state.reserved)
            evictIfOver(&state)
            return true
        }) {
            room.wait()
        }
    }

    /// Starts decoding whole chunks a sequential reader will want next, without waiting.
    public func prefetch(_ wanted: [(hash: ChunkHash, length: Int)]) {
        let missing = state.withLock { state in
            wanted.filter { item in
                let first = Key(hash: item.hash, frame: 0)
                return state.entries[first] == nil && state.pending[first] == nil
                    && state.queued.insert(item.hash).inserted
            }
        }
        for item in missing {
            prefetchers.submit { [self] in
                state.withLock { _ = $0.queued.remove(item.hash) }
                _ = try? frames(item.hash, length: item.length, 0..<ChunkFile.frameCount(item.length))
            }
        }
    }

    /// What a load of `frames` sets aside: each frame decoded, and at most as much again for
    /// the stored bytes it is decoded from. A format-1 chunk (one frame for the whole chunk)
    /// decodes whole whatever is asked, so a small read of one takes more than this.
    static func reservation(_ frames: Range<Int>) -> Int { 2 * frames.count * ChunkFile.frameSize }

    /// Over budget, evicts the least recently used down to 90% of it in one pass, so the
    /// sort is paid once per tenth of the cache rather than once per frame. Loads in flight
    /// count; when they alone fill the budget, every frame but `sparing` goes.
    private func evictIfOver(_ state: inout State, sparing: Set<Key> = []) {
        guard state.bytes + state.reserved + state.charged > budget else { return }
        let target = budget - budget / 10
        for (other, entry) in state.entries.sorted(by: { $0.value.tick < $1.value.tick }) where !sparing.contains(other)
        {
            if state.bytes + state.reserved + state.charged <= target { break }
            state.entries[other] = nil
            state.bytes -= entry.data.count
        }
    }
}
