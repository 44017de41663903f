import Crypto
import Dispatch
import Foundation
import Synchronization

/// What backing up one disk produced.
struct DiskBackupResult {
    var map: ChunkMap
    var record: PointDisk
    /// What it read, for the next incremental.
    var fingerprints: Fingerprints
}

/// Reads one disk with at least eight workers, sixteen when it reads past the page cache (or
/// as many as the store takes requests at once): each worker takes the next run of data
/// positions in `ReadOrder`'s order and reads it, one request per stretch of consecutive
/// positions; for each chunk it marks it zero or fingerprints it, takes the parent's chunk
/// where the parent's backup read the same fingerprint there, and otherwise hashes it and
/// stores it when the store does not have it yet.
///
/// `ReadOrder` takes the disk from four places at once (with sixteen workers), 4 MiB at a
/// time, so a cluster of changes is hashed and compressed while the unchanged rest is read.
/// Measured on the 2-core bench machine, cold, in turns, the corpus image's v3 incremental
/// (its changes fill a quarter of its data in one stretch), against front to back: 0.96-1.36 s
/// (median 1.15) against 1.18-1.46 s (1.29), six each; 0.92-1.11 s against 1.18-1.51 s, four
/// each; the v2 incremental 0.96-1.02 s against 1.13-1.39 s; the full backup unchanged
/// (1.42-1.70 s against 1.47-1.75 s, and one 2.14 s). Reading each run with one request
/// into huge pages (`Posix.mapForReads`) instead of each chunk with its own, in turns: v3
/// 0.76-0.85 s (median 0.78) against 0.84-1.01 s (0.96), five each; v2 0.64-0.77 s against
/// 0.76-0.94 s, four each; the full backup unchanged (1.43-1.54 s against 1.47-1.66 s), as
/// it waits on the cores.
struct DiskBackup {
    let source: any CapturedDisk
    let store: ChunkStore
    let chunkSize: Int
    let compressionLevel: Int
    /// The parent point's image of this disk, for an incremental.
    let parent: FlatImage?
    /// What the parent's backup read, when this host kept it (`FingerprintStore`).
    let known: Fingerprints?
    /// Which chunk positions to read, and what the others hold.
    let plan: ReadPlan
    let meter: ProgressMeter
    let cancelled: @Sendable () -> Bool
    /// How many chunks ahead of the workers a disk read through the page cache is asked to
    /// read: with a cold cache, the disk's latency is then hidden behind the hashing and
    /// compressing.
    static let readAhead = 16
    /// A worker waits for its chunk's flush to the repository's disk (a few ms each) about as
    /// long as it hashes and compresses, so more workers than cores keep the cores busy.
    /// Measured on the 2-core bench machine with the corpus image, cold, side by side:
    /// - two workers against four: full backup 3.2-3.7 s against 2.7-2.9 s, the incremental
    ///   2.4 s against 1.6 s;
    /// - four against eight, three rounds: full 2.84-3.15 s (median 2.96) against 2.78-2.90 s
    ///   (2.81), the incremental 1.57-1.75 s (1.64) against 1.54-1.61 s (1.56);
    /// - sixteen gained nothing over eight (full 2.80-2.98 s against 2.84-3.09 s, the
    ///   incremental 1.64-1.94 s against 1.53-1.68 s).
    /// Each worker holds a chunk buffer, a compression buffer and a zstd context (a few MiB).
    static let minimumWorkers = 8
    /// Reading past the page cache, a worker waits for its own read too (nothing reads ahead
    /// of it), so twice as many keep the disk and the cores busy. Six rounds in turns on the
    /// corpus image, cold: direct with sixteen against buffered with eight, full backup
    /// 1.46-1.61 s (median 1.53) against 1.45-1.84 s (1.56) with system time 0.42-0.51 s
    /// against 0.54-0.71 s, the incremental 0.91-1.22 s (1.05) against 0.92-1.16 s (1.09);
    /// direct with eight took 1.30-1.44 s for the incremental. Each worker holds a run
    /// (4 MiB) whatever the chunk size: the command's peak RSS was 125-132 MiB in those backups
    /// against 78-85 MiB with a 1 MiB buffer each.
    static let minimumDirectWorkers = 16

    func run(pointId: String) throws -> DiskBackupResult {
        let count = ChunkMap.positions(diskSize: source.size, chunkSize: chunkSize)
        var refs = [ChunkRef](repeating: .zero, count: count)
        var prints = [Fingerprint](repeating: .none, count: count)
        if plan.carriesParent, let parent {
            // What was not read is the parent's, and so are its fingerprints.
            for position in 0..<min(count, parent.refs.count) { refs[position] = parent.refs[position] }
            if let known {
                for position in 0..<min(count, known.prints.count) { prints[position] = known.prints[position] }
            }
            for position in plan.zeroed where position < count {
                refs[position] = .zero
                prints[position] = .none
            }
        }
        let key = known?.key ?? SymmetricKey(size: .bits128)
        let next = Atomic<Int>(0)
        let newBytes = Atomic<Int>(0)
        let bytesRead = Atomic<Int>(0)
        let failure = Mutex<VaultError?>(nil)
        let workers = max(store.objects.writers, source.readsDirect ? Self.minimumDirectWorkers : Self.minimumWorkers)
        let size = source.size
        let chunkSize = self.chunkSize
        let path = source.path
        let parent = self.parent
        let known = self.known
        let positions = plan.positions
        let order = ReadOrder(count: positions.count, workers: workers, chunkSize: chunkSize)

        refs.withUnsafeMutableBufferPointer { refs in
            prints.withUnsafeMutableBufferPointer { prints in
                let out = DisjointSlots(refs)
                let printed = DisjointSlots(prints)
                runWorkers(workers) { _ in
                    let compressor = ZstdCompressor(level: compressionLevel)
                    guard let buffer = Posix.mapForReads(byteCount: order.run * chunkSize + DiskSource.alignment) else {
                        failure.withLock { $0 = $0 ?? VaultError(.io, "no memory for reading \(path)") }
                        return
                    }
                    defer { Posix.unmap(buffer) }
                    var scratch: [UInt8] = []

                    /// Backs up the chunk at `position`, whose bytes `chunk` holds.
                    func backUp(_ chunk: UnsafeRawBufferPointer, at position: Int) throws {
                        if chunk.isAllZero {
                            // A chunk carried from the parent may have become zeros.
                            if plan.carriesParent {
                                out.set(position, .zero)
                                printed.set(position, .none)
                            }
                            return
                        }
                        let print = Fingerprint(of: chunk, key: key)
                        printed.set(position, print)
                        if let parent, let known, position < parent.refs.count, case .data = parent.refs[position],
                            known.matches(print, at: position)
                        {
                            out.set(position, parent.refs[position])
                            return
                        }
                        let hash = store.chunkId(of: chunk)
                        out.set(position, .data(hash))
                        if let parent, position < parent.refs.count, parent.refs[position] == .data(hash) { return }
                        let written = try store.store(chunk, hash: hash, compressor: compressor, scratch: &scratch)
                        newBytes.add(written, ordering: .relaxed)
                    }

                    while failure.withLock({ $0 == nil }) {
                        let run = next.add(1, ordering: .relaxed).oldValue
                        guard run < order.runs else { break }
                        if cancelled() {
                            failure.withLock { $0 = $0 ?? VaultError(.cancelled, "the backup was cancelled") }
                            break
                        }
                        if !source.readsDirect {
                            for ahead in order.indices(ofRun: run + max(1, Self.readAhead / order.run)) {
                                source.prefetch(offset: Int64(positions[ahead]) * Int64(chunkSize), length: chunkSize)
                            }
                        }
                        // Each stretch of consecutive positions is one read, into the buffer at the
                        // place of its first chunk in the run.
                        let taken = order.indices(ofRun: run).map { positions[$0] }
                        var first = 0
                        while first < taken.count {
                            var end = first + 1
                            while end < taken.count && taken[end] == taken[end - 1] + 1 { end += 1 }
                            let offset = Int64(taken[first]) * Int64(chunkSize)
                            let length = Int(min(Int64((end - first) * chunkSize), size - offset))
                            do {
                                let into = UnsafeMutableRawBufferPointer(rebasing: buffer[(first * chunkSize)...])
                                let n = try source.read(into: into, offset: offset, length: length)
                                bytesRead.add(n, ordering: .relaxed)
                                guard n == length else {
                                    throw VaultError(
                                        .io,
                                        "disk \(path) ended at \(offset + Int64(n)) while reading; it changed size during the backup"
                                    )
                                }
                                for i in first..<end {
                                    let start = i * chunkSize
                                    let chunkEnd = min(start + chunkSize, first * chunkSize + length)
                                    try backUp(UnsafeRawBufferPointer(rebasing: buffer[start..<chunkEnd]), at: taken[i])
                                    meter.advance(Int64(chunkEnd - start))
                                }
                            } catch {
                                let wrapped = error as? VaultError ?? VaultError(.io, "reading \(path)", cause: error)
                                failure.withLock { $0 = $0 ?? wrapped }
                                break
                            }
                            first = end
                        }
                    }
                }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }

        let image = FlatImage(size: size, chunkSize: chunkSize, refs: refs)
        var entries: [ChunkMap.Entry] = []
        var changed: Int64 = 0
        for (position, ref) in refs.enumerated() {
            if let parent, position < parent.refs.count, parent.refs[position] == ref { continue }
            entries.append(.init(position: position, ref: ref))
            if ref != .zero { changed += Int64(image.length(of: position)) }
        }
        let map = ChunkMap(
            kind: parent == nil ? .full : .incremental, chunkSize: chunkSize, diskSize: size, entries: entries)
        let record = PointDisk(
            pointId: pointId, disk: source.name, size: size, dataBytes: image.dataBytes,
            changedBytes: changed, newBytes: Int64(newBytes.load(ordering: .relaxed)),
            bytesRead: Int64(bytesRead.load(ordering: .relaxed)))
        return DiskBackupResult(
            map: map, record: record,
            fingerprints: Fingerprints(
                pointId: pointId, disk: source.name, chunkSize: chunkSize, key: key, prints: prints))
    }
}

/// The slots of a buffer that workers fill at once, each slot by one worker: the position
/// `p` is written only by the worker that took the run holding `p` from an atomic counter,
/// and the buffer is read only after every worker has been joined.
private struct DisjointSlots<Element>: @unchecked Sendable {
    private let buffer: UnsafeMutableBufferPointer<Element>

    init(_ buffer: UnsafeMutableBufferPointer<Element>) { self.buffer = buffer }

    /// Writes one slot; see above for who may.
    nonmutating func set(_ position: Int, _ value: Element) { buffer[position] = value }
}
