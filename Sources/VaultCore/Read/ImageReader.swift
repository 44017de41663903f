import Synchronization

/// A piece of what an image read returns: `range` of a decoded frame the cache holds, or a
/// run of zeros.
public enum ImagePiece: Sendable {
    case bytes([UInt8], Range<Int>)
    case zeros(Int)

    public var count: Int {
        switch self {
        case .bytes(_, let range): return range.count
        case .zeros(let count): return count
        }
    }
}

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
    /// range throws `.corrupt` naming its byte range (`.unreachable` while its store is away).
    public func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        var copied = 0
        for piece in try pieces(at: offset, count: destination.count) {
            let target = destination.baseAddress! + copied
            switch piece {
            case .zeros(let count):
                target.initializeMemory(as: UInt8.self, repeating: 0, count: count)
            case .bytes(let frame, let range):
                frame.withUnsafeBytes {
                    target.copyMemory(from: $0.baseAddress! + range.lowerBound, byteCount: range.count)
                }
            }
            copied += piece.count
        }
        return copied
    }

    /// The up to `count` bytes at `offset` (none at the end) as the cache holds them, for a
    /// reply sent without copying them first: runs of zeros, and ranges of decoded frames.
    /// A missing or damaged chunk in the range throws `.corrupt` naming its byte range
    /// (`.unreachable` while its store is away).
    public func pieces(at offset: Int64, count: Int) throws -> [ImagePiece] {
        guard offset >= 0, offset < image.size, count > 0 else { return [] }
        let end = min(image.size, offset + Int64(count))
        let chunkSize = Int64(image.chunkSize)
        var pieces: [ImagePiece] = []
        var cursor = offset
        while cursor < end {
            let position = Int(cursor / chunkSize)
            let chunkStart = Int64(position) * chunkSize
            let within = Int(cursor - chunkStart)
            let take = Int(min(end, chunkStart + chunkSize) - cursor)
            switch image.refs[position] {
            case .zero:
                if case .zeros(let before)? = pieces.last {
                    pieces[pieces.count - 1] = .zeros(before + take)
                } else {
                    pieces.append(.zeros(take))
                }
            case .data(let hash):
                let length = image.length(of: position)
                let first = within / ChunkFile.frameSize
                let last = (within + take - 1) / ChunkFile.frameSize
                let frames: [[UInt8]]
                do {
                    frames = try cache.frames(hash, length: length, first..<(last + 1))
                } catch let error as VaultError {
                    // An object store away is not damage: it stays unreachable, to be tried again.
                    throw VaultError(
                        error.code == .unreachable || error.code == .io ? error.code : .corrupt,
                        "bytes \(chunkStart)-\(chunkStart + Int64(length) - 1): \(error.message)")
                }
                var taken = 0
                for (k, frame) in frames.enumerated() {
                    let frameStart = (first + k) * ChunkFile.frameSize
                    let from = max(within, frameStart) - frameStart
                    let count = min(frame.count - from, take - taken)
                    pieces.append(.bytes(frame, from..<(from + count)))
                    taken += count
                }
            }
            cursor += Int64(take)
        }
        scheduleReadAhead(offset: offset, end: end)
        return pieces
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
