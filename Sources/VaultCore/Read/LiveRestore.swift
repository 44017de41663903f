import Foundation
import Glibc
import Synchronization

/// One instant restore being served: reads and writes of its image, and the filler that
/// copies the rest of the point into the target behind them.
///
/// Each chunk position of the disk is either filled (its bytes are in the target: the
/// point's, and any write made since) or not (its bytes are the point's). A read fills what
/// it touches first (copy on read) and then reads the target; a write to a position not
/// filled merges the point's chunk with the write and writes the whole chunk. So once a
/// position is filled, the point is never read for it again.
///
/// What is filled is kept in a bitmap file, and a bit is written there only after the
/// target's data for it is flushed (fdatasync, then the bitmap, then fdatasync), so a crash
/// at any moment leaves bits only where the target holds the data. A write is acknowledged
/// only once its position's bit is on disk, or was before: killed at any moment, the daemon
/// never serves the point where a write it acknowledged lies.
public final class LiveRestore: Sendable {
    public let record: InstantRestoreRecord
    private let restores: InstantRestores
    private let target: RestoreTarget
    private let image: FlatImage
    /// Separate readers keep the filler's read-ahead apart from the guest's reads.
    private let guestReader: ImageReader
    private let fillReader: ImageReader
    private let lease: ReaderLease?
    private let bitmapFd: Int32
    /// Held exclusively while this restore is served: another mount does not serve it too,
    /// and `vaultctl restore finish` knows when the target is let go.
    private let servedFd: Int32
    /// One lock for each of `stripes.count` groups of positions: a position is filled or
    /// written by one request at a time.
    private let stripes: [NSLock]
    private let state: Mutex<FillState>
    private let commitLock = NSLock()
    /// Guest requests in progress: the filler waits while there are any.
    private let guestBusy = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let fillerEnded = DispatchSemaphore(value: 0)
    private let lifecycle = Mutex<(filling: Bool, stopped: Bool)>((false, false))
    /// Guest requests in progress, and whether the restore has stopped: once it has, requests
    /// fail, and its descriptors are closed only when none is in progress, so no request
    /// ever reaches a descriptor number the kernel has handed out again.
    private let gate = Mutex<(closed: Bool, inFlight: Int)>((false, 0))
    private let log: @Sendable (String) -> Void

    private struct FillState {
        /// Bits on disk, and bits of positions whose data is in the target (a superset).
        var durable: [UInt8]
        var filled: [UInt8]
        /// Filled positions whose bits are not on disk yet, in the order they were filled.
        var pending: [Int] = []
        var filledBytes: Int64
        var filledSinceStart: Int64 = 0
        var startedAt = Date()
        var failure: String?
        /// Why the fill waits (an object store away), while it does.
        var waiting: String?
    }

    /// Positions filled or written by the filler between two flushes of the bitmap.
    static let commitBytes = 16 << 20

    private init(
        record: InstantRestoreRecord, restores: InstantRestores, target: RestoreTarget, image: FlatImage,
        cache: ChunkCache, lease: ReaderLease?, bitmap: [UInt8], bitmapFd: Int32, servedFd: Int32,
        log: @escaping @Sendable (String) -> Void
    ) {
        self.record = record
        self.restores = restores
        self.target = target
        self.image = image
        guestReader = ImageReader(image: image, cache: cache, readAhead: 8)
        fillReader = ImageReader(image: image, cache: cache, readAhead: 32)
        self.lease = lease
        self.bitmapFd = bitmapFd
        self.servedFd = servedFd
        stripes = (0..<64).map { _ in NSLock() }
        var bytes: Int64 = 0
        for position in 0..<record.positions where bitmap[position >> 3] & (1 << (position & 7)) != 0 {
            bytes += Int64(record.length(of: position))
        }
        state = Mutex(FillState(durable: bitmap, filled: bitmap, filledBytes: bytes))
        self.log = log
    }

    /// Opens restore `record` to serve it: its target (locked: nothing else writes it
    /// meanwhile), its bitmap, and the point's image (leased). Refused while another mount
    /// serves it.
    public static func open(
        _ record: InstantRestoreRecord, restores: InstantRestores, repository: Repository, cache: ChunkCache,
        log: @escaping @Sendable (String) -> Void
    ) throws -> LiveRestore {
        let id = record.id
        let servedFd = try Posix.open(restores.servedLockPath(id), O_RDONLY | O_NOFOLLOW, what: "cannot use")
        var handed = false
        defer { if !handed { close(servedFd) } }
        guard flock(servedFd, LOCK_EX | LOCK_NB) == 0 else {
            throw VaultError(.busy, "another mount serves it")
        }
        let bitmapPath = restores.bitmapPath(id)
        try restores.requireTrusted(bitmapPath, isDirectory: false)
        let bitmapFd = try Posix.open(bitmapPath, O_RDWR | O_NOFOLLOW, what: "cannot open the fill bitmap")
        defer { if !handed { close(bitmapFd) } }
        var bitmap = [UInt8](repeating: 0, count: record.bitmapBytes)
        let read = try bitmap.withUnsafeMutableBytes {
            try Posix.pread(bitmapFd, $0.baseAddress!, $0.count, 0, path: bitmapPath)
        }
        guard read == record.bitmapBytes, Posix.fileSize(bitmapPath) == Int64(record.bitmapBytes) else {
            throw VaultError(.corrupt, "\(bitmapPath) is damaged: it does not hold \(record.bitmapBytes) bytes")
        }
        let opened = try repository.openImage(point: record.point, disk: record.disk)
        guard opened.image.size == record.size, opened.image.chunkSize == record.chunkSize else {
            throw VaultError(
                .corrupt, "point \(record.point)'s disk '\(record.disk)' is not the size the restore began with")
        }
        let target: RestoreTarget
        do { target = try RestoreTarget.open(record.target, create: false) } catch let error as VaultError
            where error.code == .notFound
        {
            throw VaultError(
                .diskMissing,
                "the target \(record.target) is gone; cancel the restore ('vaultctl restore cancel \(id)') and start again"
            )
        }
        let identity = try target.identity()
        guard identity.device == record.targetDevice, identity.inode == record.targetInode else {
            target.discard()
            throw VaultError(
                .diskMissing,
                "\(record.target) is no longer the \(target.isDevice ? "device" : "file") the restore began on (it was renamed, replaced or renumbered); nothing was written to it; cancel the restore ('vaultctl restore cancel \(id)')"
            )
        }
        let held = try target.currentSize()
        guard target.isDevice ? held >= record.size : held == record.size else {
            target.discard()
            throw VaultError(
                .invalidArgument, "the target \(record.target) holds \(held) bytes, not the disk's \(record.size)")
        }
        handed = true
        return LiveRestore(
            record: record, restores: restores, target: target, image: opened.image, cache: cache,
            lease: opened.lease, bitmap: bitmap, bitmapFd: bitmapFd, servedFd: servedFd, log: log)
    }

    public var size: Int64 { record.size }

    // MARK: Guest requests

    /// Up to `count` bytes at `offset` (none past the end). Positions not filled are filled
    /// first, so the bytes come from the target.
    public func read(at offset: Int64, count: Int) throws -> [UInt8] {
        guard offset >= 0, offset < record.size, count > 0 else { return [] }
        let count = Int(min(Int64(count), record.size - offset))
        try enter()
        defer { leave() }
        return try [UInt8](unsafeUninitializedCapacity: count) { raw, initialized in
            try forEachPosition(offset, count) { position, within, length in
                let start = Int64(position) * Int64(record.chunkSize) + Int64(within)
                let into = UnsafeMutableRawBufferPointer(
                    start: raw.baseAddress! + Int(start - offset), count: length)
                try withPosition(position) {
                    if !isFilled(position) {
                        let chunk = try load(position, reader: guestReader)
                        do { try store(position, chunk) } catch {
                            // A target that cannot take the chunk (full, failing) does not
                            // fail the read: the bytes were read from the point already.
                            if let chunk {
                                chunk.withUnsafeBytes {
                                    into.copyMemory(
                                        from: UnsafeRawBufferPointer(rebasing: $0[within..<(within + length)]))
                                }
                            } else {
                                into.initializeMemory(as: UInt8.self, repeating: 0)
                            }
                            return
                        }
                    }
                    let got = try Posix.pread(target.fd, into.baseAddress!, length, start, path: target.name)
                    if got < length {
                        (into.baseAddress! + got).initializeMemory(as: UInt8.self, repeating: 0, count: length - got)
                    }
                }
            }
            initialized = count
        }
    }

    /// Writes `bytes` at `offset`; returns when the target has them and every position they
    /// touch is marked filled on disk. A write past the disk's end is refused, as a disk
    /// refuses one.
    public func write(at offset: Int64, _ bytes: UnsafeRawBufferPointer) throws -> Int {
        guard bytes.count > 0 else { return 0 }
        guard offset >= 0, offset + Int64(bytes.count) <= record.size else {
            throw VaultError(.noSpace, "a write past the end of the \(record.size)-byte disk")
        }
        try enter()
        defer { leave() }
        var mustCommit = false
        try forEachPosition(offset, bytes.count) { position, within, length in
            let chunkStart = Int64(position) * Int64(record.chunkSize)
            let from = Int(chunkStart + Int64(within) - offset)
            let piece = UnsafeRawBufferPointer(rebasing: bytes[from..<(from + length)])
            try withPosition(position) {
                let (filled, durable) = bits(position)
                if filled {
                    try Posix.pwriteAll(target.fd, piece, chunkStart + Int64(within), path: target.name)
                    if !durable { mustCommit = true }
                    return
                }
                let chunkLength = record.length(of: position)
                if within == 0 && length == chunkLength {
                    try Posix.pwriteAll(target.fd, piece, chunkStart, path: target.name)
                } else {
                    var chunk = [UInt8](repeating: 0, count: chunkLength)
                    try chunk.withUnsafeMutableBytes { raw in
                        if image.refs[position] != .zero { _ = try guestReader.read(at: chunkStart, into: raw) }
                        (raw.baseAddress! + within).copyMemory(from: piece.baseAddress!, byteCount: length)
                        try Posix.pwriteAll(target.fd, UnsafeRawBufferPointer(raw), chunkStart, path: target.name)
                    }
                }
                markFilled(position)
                mustCommit = true
            }
        }
        if mustCommit { try commit() }
        return bytes.count
    }

    /// Makes every write so far durable (the guest's fsync).
    public func flush() throws {
        try enter()
        defer { leave() }
        try commit()
    }

    /// Lets a guest request in, unless the restore has stopped; the filler waits meanwhile.
    private func enter() throws {
        try gate.withLock { gate in
            guard !gate.closed else { throw VaultError(.io, "restore \(record.id) has ended") }
            gate.inFlight += 1
        }
        guestBusy.add(1, ordering: .relaxed)
    }

    private func leave() {
        guestBusy.subtract(1, ordering: .relaxed)
        gate.withLock { $0.inFlight -= 1 }
    }

    // MARK: Fill

    /// Starts the filler: it copies the positions not filled yet in disk order, and lets any
    /// guest request go first.
    public func startFilling(rate: Int64? = nil) {
        let start = lifecycle.withLock { state -> Bool in
            guard !state.filling, !state.stopped else { return false }
            state.filling = true
            return true
        }
        guard start else { return }
        Thread.detachNewThread { [self] in
            fillRemaining(rate: rate)
            fillerEnded.signal()
        }
    }

    private func fillRemaining(rate: Int64?) {
        var sinceCommit = 0
        var lastCommit = Date()
        var began = Date()
        var copied: Int64 = 0
        do {
            for position in 0..<record.positions {
                if stopping.load(ordering: .relaxed) { break }
                if isFilled(position) { continue }
                // Guest requests first: wait while there are any, up to 20 ms at a time.
                var waited = 0
                while guestBusy.load(ordering: .relaxed) > 0 && waited < 100 && !stopping.load(ordering: .relaxed) {
                    usleep(200)
                    waited += 1
                }
                // An object store away holds the fill, which goes on where it was when the
                // store answers again; anything else stops it.
                while true {
                    do {
                        // The point's chunk is fetched before the position's lock is taken:
                        // a store that is slow to answer holds up no guest request.
                        if !isFilled(position) {
                            _ = try fillReader.pieces(
                                at: Int64(position) * Int64(record.chunkSize), count: record.length(of: position))
                        }
                        try withPosition(position) {
                            if !isFilled(position) { try fill(position, reader: fillReader) }
                        }
                        if state.withLock({ $0.waiting != nil }) {
                            state.withLock { $0.waiting = nil }
                            log("restore \(record.id): the store answers again; the fill goes on")
                            // The rate counts from here: the time waited does not let it race.
                            began = Date()
                            copied = 0
                        }
                        break
                    } catch let error as VaultError where error.code == .unreachable {
                        if state.withLock({ $0.waiting == nil }) {
                            log("restore \(record.id): the fill waits for the store: \(error.message)")
                        }
                        state.withLock { $0.waiting = error.message }
                        writeStatus()
                        for _ in 0..<20 where !stopping.load(ordering: .relaxed) { usleep(100_000) }
                        if stopping.load(ordering: .relaxed) { break }
                    }
                }
                if stopping.load(ordering: .relaxed) { break }
                sinceCommit += record.length(of: position)
                copied += Int64(record.length(of: position))
                // Held to `rate` on average: ahead of it, wait until the average falls back.
                if let rate {
                    let ahead = Double(copied) / Double(rate) - Date().timeIntervalSince(began)
                    if ahead > 0 { usleep(UInt32(min(ahead, 1) * 1e6)) }
                }
                if sinceCommit >= Self.commitBytes || Date().timeIntervalSince(lastCommit) >= 1 {
                    try commit()
                    writeStatus()
                    sinceCommit = 0
                    lastCommit = Date()
                }
            }
            try commit()
        } catch {
            state.withLock { $0.failure = "\(error)" }
            log("restore \(record.id): the fill stopped: \(error)")
        }
        writeStatus()
        if status().state == .complete {
            log("restore \(record.id): complete; \(record.target) holds the whole disk")
        }
    }

    /// Copies position `position` of the point into the target (its stripe is held).
    private func fill(_ position: Int, reader: ImageReader) throws {
        try store(position, try load(position, reader: reader))
    }

    /// The point's bytes at `position`: nil where they are zeros. Fails only on the point's
    /// side (a damaged chunk, a store away).
    private func load(_ position: Int, reader: ImageReader) throws -> [UInt8]? {
        let offset = Int64(position) * Int64(record.chunkSize)
        let length = record.length(of: position)
        if image.refs[position] == .zero {
            // Asked of the reader too, so its read-ahead keeps following the filler.
            _ = try reader.pieces(at: offset, count: length)
            return nil
        }
        var chunk = [UInt8](repeating: 0, count: length)
        _ = try chunk.withUnsafeMutableBytes { try reader.read(at: offset, into: $0) }
        return chunk
    }

    /// Puts the point's bytes `chunk` (nil: zeros) at `position` of the target and marks it
    /// filled. Fails only on the target's side (full, failing).
    private func store(_ position: Int, _ chunk: [UInt8]?) throws {
        let offset = Int64(position) * Int64(record.chunkSize)
        if let chunk {
            try chunk.withUnsafeBytes { try Posix.pwriteAll(target.fd, $0, offset, path: target.name) }
        } else {
            try target.zero(at: offset, length: record.length(of: position))
        }
        markFilled(position)
        FaultInjection.reached("instant-filled")
    }

    /// Flushes the target, then writes the bits of positions filled since the last commit
    /// and flushes them: a bit is never on disk before its data.
    private func commit() throws {
        commitLock.lock()
        defer { commitLock.unlock() }
        let batch = state.withLock { $0.pending }
        guard fdatasync(target.fd) == 0 else { throw Posix.error("cannot flush", target.name) }
        guard !batch.isEmpty else { return }
        var bitmap = state.withLock { $0.durable }
        for position in batch { bitmap[position >> 3] |= 1 << (position & 7) }
        FaultInjection.reached("instant-before-bitmap")
        // Only the 4 KiB pages of the bitmap that changed (a 16 TiB disk's is 2 MiB).
        let path = restores.bitmapPath(record.id)
        let page = 4096
        for first in Set(batch.map { ($0 >> 3) / page * page }).sorted() {
            let end = min(bitmap.count, first + page)
            try bitmap[first..<end].withUnsafeBytes { try Posix.pwriteAll(bitmapFd, $0, Int64(first), path: path) }
        }
        guard fdatasync(bitmapFd) == 0 else { throw Posix.error("cannot flush", path) }
        state.withLock { state in
            for position in batch { state.durable[position >> 3] |= 1 << (position & 7) }
            state.pending.removeFirst(batch.count)
        }
        FaultInjection.reached("instant-committed")
    }

    // MARK: Status

    public func status(now: Date = Date()) -> InstantRestoreStatus {
        state.withLock { state in
            let elapsed = now.timeIntervalSince(state.startedAt)
            let remaining = record.size - state.filledBytes
            let rate = elapsed >= 0.5 && remaining > 0 ? Double(state.filledSinceStart) / elapsed : nil
            let phase: InstantRestoreStatus.State =
                state.failure != nil ? .failed : remaining == 0 && state.pending.isEmpty ? .complete : .filling
            return InstantRestoreStatus(
                id: record.id, server: record.server, point: record.point, pointName: record.pointName,
                disk: record.disk, target: record.target, state: phase, size: record.size,
                filledBytes: state.filledBytes, percent: Double(state.filledBytes) * 100 / Double(record.size),
                bytesPerSecond: rate, etaSeconds: rate.flatMap { $0 > 0 ? Double(remaining) / $0 : nil },
                error: (state.failure ?? state.waiting.map { "waiting for the store: \($0)" }).map {
                    String($0.prefix(512))
                }, updatedAt: now)
        }
    }

    /// Most bytes `statusJSON` gives (its error is cut short to fit).
    public static let statusLimit = 4096

    /// `status.json` as the mount shows it.
    public func statusJSON() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return ((try? encoder.encode(status())).map(Array.init) ?? []) + [10]
    }

    /// Keeps the status where `vaultctl restore status` reads it.
    private func writeStatus() {
        do {
            try Posix.writeFileAtomically(restores.statusPath(record.id), statusJSON(), mode: 0o600, sync: false)
        } catch {
            log("restore \(record.id): cannot keep its status: \(error)")
        }
    }

    /// Stops the filler, makes what is filled durable and lets the target go.
    public func stop() {
        let filling = lifecycle.withLock { state -> Bool? in
            guard !state.stopped else { return nil }
            state.stopped = true
            return state.filling
        }
        guard let filling else { return }
        stopping.store(true, ordering: .relaxed)
        gate.withLock { $0.closed = true }
        // The descriptors stay open (a leak, said once) rather than close under a request or
        // the filler still using them.
        if filling && fillerEnded.wait(timeout: .now() + 300) == .timedOut {
            return log("restore \(record.id): the filler did not stop within 300 s; its files stay open")
        }
        let deadline = Date().addingTimeInterval(60)
        while gate.withLock({ $0.inFlight }) > 0 {
            guard Date() < deadline else {
                return log("restore \(record.id): requests still run after 60 s; its files stay open")
            }
            usleep(1000)
        }
        do { try commit() } catch { log("restore \(record.id): cannot flush: \(error)") }
        writeStatus()
        do { try target.finish() } catch { log("restore \(record.id): \(error)") }
        close(bitmapFd)
        // Last: `vaultctl restore finish` waits for this to know the target is free.
        close(servedFd)
        _ = lease
    }

    // MARK: Positions

    /// Calls `body` for each chunk position the `count` bytes at `offset` touch, with where
    /// the range starts in it and how many of its bytes it takes.
    private func forEachPosition(_ offset: Int64, _ count: Int, _ body: (Int, Int, Int) throws -> Void) rethrows {
        let chunkSize = Int64(record.chunkSize)
        var cursor = offset
        let end = offset + Int64(count)
        while cursor < end {
            let position = Int(cursor / chunkSize)
            let chunkStart = Int64(position) * chunkSize
            let take = Int(min(end, chunkStart + chunkSize) - cursor)
            try body(position, Int(cursor - chunkStart), take)
            cursor += Int64(take)
        }
    }

    private func withPosition<T>(_ position: Int, _ body: () throws -> T) rethrows -> T {
        let lock = stripes[position % stripes.count]
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    private func isFilled(_ position: Int) -> Bool {
        state.withLock { $0.filled[position >> 3] & (1 << (position & 7)) != 0 }
    }

    private func bits(_ position: Int) -> (filled: Bool, durable: Bool) {
        state.withLock {
            (
                $0.filled[position >> 3] & (1 << (position & 7)) != 0,
                $0.durable[position >> 3] & (1 << (position & 7)) != 0
            )
        }
    }

    private func markFilled(_ position: Int) {
        let length = Int64(record.length(of: position))
        state.withLock { state in
            state.filled[position >> 3] |= 1 << (position & 7)
            state.pending.append(position)
            state.filledBytes += length
            state.filledSinceStart += length
        }
    }
}
