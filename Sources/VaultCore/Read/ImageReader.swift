import Synchronization

/// Reads a flattened disk image through the shared frame cache, with read-ahead that grows
/// while its reader stays sequential.
public final class ImageReader: Sendable {
    public let image: FlatImage
    private let cache: ChunkCache
    private let maxReadAhead: Int
    /// Where the last read ended, and how many chunks ahead to decode now.
    private let stream = Mutex<(end: Int64, window: Int)>((-1, 0))

    /// `readAhead` is the most chunks decoded ahead of a sequential reader; the window starts
    /// at two and doubles with each sequential read up to it.
    public init(image: FlatImage, cache: ChunkCache, readAhead: Int = 32) {
        self.image = image
        self.cache = cache
        maxReadAhead = readAhead
    }

    /// Copies up to `destination.count` bytes at `offset`; returns how many (0 at the end).
    /// Every byte it reports is written, zeros included. A missing or damaged chunk in the
    /// range throws `.corrupt` naming its byte range.
    public func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0, offset < image.size, destination.count > 0 else { return 0 }
        let end = min(image.size, offset + Int64(destination.count))
        let chunkSize = Int64(image.chunkSize)
        var cursor = offset
        while cursor < end {
            let position = Int(cursor / chunkSize)
            let chunkStart = Int64(position) * chunkSize
            let within = Int(cursor - chunkStart)
            let take = Int(min(end, chunkStart + chunkSize) - cursor)
            let target = destination.baseAddress! + Int(cursor - offset)
            switch image.refs[position] {
            case .zero:
                target.initializeMemory(as: UInt8.self, repeating: 0, count: take)
            case .data(let hash):
                let length = image.length(of: position)
                let first = within / ChunkFile.frameSize, last = (within + take - 1) / ChunkFile.frameSize
                let frames: [[UInt8]]
                do {
                    frames = try cache.frames(hash, length: length, first..<(last + 1))
                } catch let error as VaultError {
                    throw VaultError(.corrupt, "bytes \(chunkStart)-\(chunkStart + Int64(length) - 1): \(error.message)")
                }
                var copied = 0
                for (k, frame) in frames.enumerated() {
                    let frameStart = (first + k) * ChunkFile.frameSize
                    let from = max(within, frameStart) - frameStart
                    let count = min(frame.count - from, take - copied)
                    frame.withUnsafeBytes { (target + copied).copyMemory(from: $0.baseAddress! + from, byteCount: count) }
                    copied += count
                }
            }
            cursor += Int64(take)
        }
        scheduleReadAhead(offset: offset, end: end)
        return Int(end - offset)
    }

    private func scheduleReadAhead(offset: Int64, end: Int64) {
        guard maxReadAhead > 0 else { return }
        let window = stream.withLock { state -> Int in
            state.window = state.end == offset ? min(maxReadAhead, max(2, state.window * 2)) : 0
            state.end = end
            return state.window
        }
        guard window > 0 else { return }
        let first = Int((end + Int64(image.chunkSize) - 1) / Int64(image.chunkSize))
        let last = min(image.refs.count, first + window)
        guard first < last else { return }
        var wanted: [(hash: ChunkHash, length: Int)] = []
        for position in first..<last {
            if case .data(let hash) = image.refs[position] { wanted.append((hash, image.length(of: position))) }
        }
        cache.prefetch(wanted)
    }
}
