import Dispatch
import Synchronization

/// Decoded chunks shared by every reader of a repository, bounded by a byte budget and
/// evicting the least recently used. Concurrent requests for one chunk decode it once.
public final class ChunkCache: Sendable {
    /// A decode in progress; waiters block on `done` and read `result` after it is signalled.
    private final class Pending: @unchecked Sendable {
        // Written once by the loading thread before `done.leave()`, read only after `wait()`.
        var result: Result<[UInt8], VaultError> = .failure(VaultError(.io, "chunk load did not finish"))
        let done = DispatchGroup()
    }

    private struct State {
        var entries: [ChunkHash: (data: [UInt8], tick: UInt64)] = [:]
        var pending: [ChunkHash: Pending] = [:]
        var bytes = 0
        var tick: UInt64 = 0
    }

    public let budget: Int
    private let store: ChunkStore
    private let state = Mutex(State())
    private let prefetchQueue = DispatchQueue(label: "vaultfs.prefetch", attributes: .concurrent)
    private let decoded = Atomic<Int>(0)

    /// Chunks decoded from the store so far (each load, not each request).
    var decodes: Int { decoded.load(ordering: .relaxed) }
    /// Bytes of decoded chunks held now.
    var cachedBytes: Int { state.withLock { $0.bytes } }

    public init(store: ChunkStore, budget: Int) {
        self.store = store
        self.budget = max(budget, 1 << 20)
    }

    /// The plain bytes of `hash`, `length` long, from the cache or the store.
    public func chunk(_ hash: ChunkHash, length: Int) throws -> [UInt8] {
        enum Step { case hit([UInt8]), wait(Pending), load(Pending) }
        let step: Step = state.withLock { state in
            state.tick += 1
            if let entry = state.entries[hash] {
                state.entries[hash] = (entry.data, state.tick)
                return .hit(entry.data)
            }
            if let pending = state.pending[hash] { return .wait(pending) }
            let pending = Pending()
            pending.done.enter()
            state.pending[hash] = pending
            return .load(pending)
        }
        switch step {
        case .hit(let data):
            return data
        case .wait(let pending):
            pending.done.wait()
            return try pending.result.get()
        case .load(let pending):
            let result: Result<[UInt8], VaultError>
            decoded.add(1, ordering: .relaxed)
            do {
                var data = [UInt8](repeating: 0, count: length)
                try data.withUnsafeMutableBytes { try store.load(hash, into: $0) }
                result = .success(data)
            } catch let error as VaultError {
                result = .failure(error)
            } catch {
                result = .failure(VaultError(.io, "chunk \(hash)", cause: error))
            }
            pending.result = result
            state.withLock { state in
                state.pending[hash] = nil
                if case .success(let data) = result { insert(hash, data, into: &state) }
            }
            pending.done.leave()
            return try result.get()
        }
    }

    /// Starts decoding chunks a sequential reader will want next, without waiting.
    public func prefetch(_ wanted: [(hash: ChunkHash, length: Int)]) {
        let missing = state.withLock { state in
            wanted.filter { state.entries[$0.hash] == nil && state.pending[$0.hash] == nil }
        }
        for item in missing {
            prefetchQueue.async { _ = try? self.chunk(item.hash, length: item.length) }
        }
    }

    /// Over budget, evicts the least recently used down to 90% of it in one pass, so the
    /// sort is paid once per tenth of the cache rather than once per chunk.
    private func insert(_ hash: ChunkHash, _ data: [UInt8], into state: inout State) {
        state.entries[hash] = (data, state.tick)
        state.bytes += data.count
        guard state.bytes > budget else { return }
        let target = budget - budget / 10
        for (key, entry) in state.entries.sorted(by: { $0.value.tick < $1.value.tick }) where key != hash {
            if state.bytes <= target { break }
            state.entries[key] = nil
            state.bytes -= entry.data.count
        }
    }
}
