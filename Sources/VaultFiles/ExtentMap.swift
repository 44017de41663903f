import Synchronization
import VaultCore

/// Where a file's written blocks lie, read once from its extent tree: SEEK_DATA, SEEK_HOLE
/// and the blocks under a read are then found by binary search, however many extents the
/// file has. Unwritten (preallocated) extents are left out: they read as zeros, like holes.
struct ExtentMap: Sendable {
    /// The most extents one open file keeps: 32 bytes each with its run, 32 MiB in all. A
    /// file split further is read through libext2fs, call by call.
    static let limit = 1 << 20

    struct Extent: Sendable, Equatable {
        /// The extent's first block in the file; ext4 numbers them in 32 bits.
        var logical: UInt32
        var count: UInt32
        /// Its first block on the filesystem.
        var physical: UInt64
        var end: UInt64 { UInt64(logical) + UInt64(count) }
    }

    /// Blocks `start..<end` of the file are data, and the blocks either side are holes.
    struct Run: Sendable, Equatable {
        var start: UInt64
        var end: UInt64
    }

    /// A stretch of a read: bytes at `offset` on the filesystem, or zeros.
    enum Piece: Equatable {
        case bytes(offset: UInt64, count: Int)
        case zeros(count: Int)
    }

    let blockSize: UInt64
    let extents: [Extent]
    let runs: [Run]

    /// `extents` in the order the tree gives them. A damaged or hostile tree may overlap or go
    /// backwards: each extent keeps only the blocks past the ones before it, so the map is
    /// always sorted and a file cannot push its reads back onto slow, call-by-call walks.
    init(blockSize: UInt64, extents: [Extent]) {
        var kept: [Extent] = []
        var runs: [Run] = []
        var end: UInt64 = 0
        kept.reserveCapacity(extents.count)
        for var extent in extents where extent.end > end && extent.count > 0 {
            if UInt64(extent.logical) < end {
                // Past block 2^32 - 1 (an extent that ends beyond what ext4 numbers) nothing is kept.
                guard let logical = UInt32(exactly: end) else { continue }
                let cut = end - UInt64(extent.logical)
                extent = Extent(
                    logical: logical, count: extent.count - UInt32(cut),
                    physical: extent.physical.addingReportingOverflow(cut).partialValue)
            }
            if let last = runs.last, last.end == UInt64(extent.logical) {
                runs[runs.count - 1].end = extent.end
            } else {
                runs.append(Run(start: UInt64(extent.logical), end: extent.end))
            }
            kept.append(extent)
            end = extent.end
        }
        self.blockSize = blockSize
        self.extents = kept
        self.runs = runs
    }

    /// SEEK_DATA (`data`) or SEEK_HOLE from `offset` in a file of `size` bytes, as the kernel
    /// answers: nil at or past the end, and the end of the file is a hole.
    func seek(from offset: Int64, data: Bool, size: Int64) -> Int64? {
        guard offset >= 0, offset < size else { return nil }
        let block = UInt64(offset) / blockSize
        let index = first(runs.count) { runs[$0].end > block }
        let inData = index < runs.count && runs[index].start <= block
        if inData == data { return offset }
        if data {
            guard index < runs.count, runs[index].start * blockSize < UInt64(size) else { return nil }
            return Int64(runs[index].start * blockSize)
        }
        return Int64(min(runs[index].end * blockSize, UInt64(size)))
    }

    /// The pieces `count` bytes at `offset` of the file are made of, in order.
    func pieces(at offset: UInt64, count: Int) -> [Piece] {
        var pieces: [Piece] = []
        var position = offset
        let end = offset + UInt64(count)
        var index = first(extents.count) { extents[$0].end > position / blockSize }
        while position < end {
            if index < extents.count, UInt64(extents[index].logical) * blockSize <= position {
                let extent = extents[index]
                let stop = min(extent.end * blockSize, end)
                let start = extent.physical.multipliedReportingOverflow(by: blockSize)
                let within = position - UInt64(extent.logical) * blockSize
                // A block number no filesystem holds reads past the image's end, and fails there.
                let (at, overflow) = start.partialValue.addingReportingOverflow(within)
                pieces.append(.bytes(offset: start.overflow || overflow ? .max : at, count: Int(stop - position)))
                position = stop
                index += 1
            } else {
                let next = index < extents.count ? UInt64(extents[index].logical) * blockSize : end
                let stop = min(next, end)
                pieces.append(.zeros(count: Int(stop - position)))
                position = stop
            }
        }
        return pieces
    }

    /// The first index below `count` where `isAfter` holds, `count` if none: `isAfter` must
    /// be false then true along the indices.
    private func first(_ count: Int, where isAfter: (Int) -> Bool) -> Int {
        var low = 0
        var high = count
        while low < high {
            let middle = (low + high) / 2
            if isAfter(middle) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

extension ExtentMap {
    /// Bytes an extent costs in a map: the extent (16) and at most one run (16).
    static let bytesPerExtent = 32

    /// What the map takes in memory, as counted against the mount's budget.
    var bytes: Int { extents.count * 16 + runs.count * 16 + 64 }
}

/// The extent maps of one filesystem's files, kept by inode within a budget of bytes that
/// is counted against the mount's memory (`cache_size`), least recently used dropped first.
/// Files read their map from here on every call: many large maps in use at once cost their
/// walks again, never memory beyond the budget.
final class ExtentMaps: Sendable {
    private struct State {
        /// Maps by inode, each costing its bytes.
        var maps = LRUCache<UInt64, ExtentMap>()
        var bytes: Int { maps.cost }
        var budget: Int
        var memory: ChunkCache?
    }

    private let state: Mutex<State>

    /// Bytes of maps kept when no mount gives a budget.
    static let defaultBudget = 64 << 20

    init(budget: Int = ExtentMaps.defaultBudget) {
        state = Mutex(State(budget: budget))
    }

    deinit { state.withLock { $0.memory?.charge(-$0.bytes) } }

    /// Counts the maps against `memory` from now on, and keeps `budget` bytes of them at most.
    func use(budget: Int, memory: ChunkCache?) {
        state.withLock { state in
            state.memory?.charge(-state.bytes)
            state.budget = budget
            state.memory = memory
            memory?.charge(state.bytes)
            Self.evict(&state, keeping: 0, budget: budget)
        }
    }

    /// The most extents a map may have: one map alone never outgrows the budget.
    var extentLimit: Int { state.withLock { min(ExtentMap.limit, $0.budget / ExtentMap.bytesPerExtent) } }

    /// Bytes of maps kept now.
    var bytes: Int { state.withLock { $0.bytes } }

    func map(_ inode: UInt64) -> ExtentMap? {
        state.withLock { $0.maps.value(for: inode) }
    }

    func keep(_ map: ExtentMap, for inode: UInt64) {
        state.withLock { state in
            let budget =
                state.memory.map { Volume.share(of: $0, own: state.bytes, budget: state.budget) } ?? state.budget
            guard map.bytes <= budget else { return }
            Self.evict(&state, keeping: map.bytes, budget: budget)
            let before = state.bytes
            state.maps.insert(map, for: inode, cost: map.bytes)
            state.memory?.charge(state.bytes - before)
        }
    }

    /// Drops the least recently used maps until `room` more bytes fit in three quarters of
    /// `budget`: one sort frees room for many more maps, so opening many small files does
    /// not sort them all each time.
    private static func evict(_ state: inout State, keeping room: Int, budget: Int) {
        guard state.bytes + room > budget else { return }
        let before = state.bytes
        state.maps.evict(downTo: budget / 4 * 3 - room)
        state.memory?.charge(state.bytes - before)
    }
}
