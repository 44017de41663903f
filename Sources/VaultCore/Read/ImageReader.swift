import Synchronization

/// Reads a flattened disk image through the shared chunk cache, with read-ahead for
/// sequential readers.
public final class ImageReader: Sendable {
    public let image: FlatImage
    private let cache: ChunkCache
    private let readAhead: Int
    private let lastEnd = Mutex<Int64>(-1)

    /// `readAhead` is how many chunks to decode ahead of a sequential reader.
    public init(image: FlatImage, cache: ChunkCache, readAhead: Int = 8) {
        self.image = image
        self.cache = cache
        self.readAhead = readAhead
    }

    /// Copies up to `destination.count` bytes at `offset`; returns how many (0 at the end).
    /// A missing or damaged chunk in the range throws `.corrupt` naming its byte range.
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
                let data: [UInt8]
                do {
                    data = try cache.chunk(hash, length: image.length(of: position))
                } catch let error as VaultError {
                    throw VaultError(.corrupt, "bytes \(chunkStart)-\(chunkStart + Int64(image.length(of: position)) - 1): \(error.message)")
                }
                data.withUnsafeBytes { target.copyMemory(from: $0.baseAddress! + within, byteCount: take) }
            }
            cursor += Int64(take)
        }
        scheduleReadAhead(offset: offset, end: end)
        return Int(end - offset)
    }

    private func scheduleReadAhead(offset: Int64, end: Int64) {
        let sequential = lastEnd.withLock { last in
            defer { last = end }
            return last == offset
        }
        guard sequential, readAhead > 0 else { return }
        let first = Int((end + Int64(image.chunkSize) - 1) / Int64(image.chunkSize))
        let last = min(image.refs.count, first + readAhead)
        guard first < last else { return }
        var wanted: [(hash: ChunkHash, length: Int)] = []
        for position in first..<last {
            if case .data(let hash) = image.refs[position] { wanted.append((hash, image.length(of: position))) }
        }
        cache.prefetch(wanted)
    }
}
