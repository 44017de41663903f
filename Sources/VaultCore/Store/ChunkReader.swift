/// One chunk opened for reading: its checked header and frame index, and the decoding of
/// some of its frames with only the bytes they need read from the store.
struct ChunkReader {
    let header: ChunkFile.Header
    private let object: any ObjectReader
    /// The first bytes of the object, fetched when it was opened.
    private let prefix: [UInt8]
    let store: ChunkStore

    /// Opens and checks the chunk `hash`; a missing or damaged one throws `.corrupt`. With
    /// `whole`, from a store that fetches more than the index on opening (where each request
    /// is a round trip), the whole object comes in that one request.
    init(store: ChunkStore, hash: ChunkHash, whole: Bool = false) throws {
        let remote = store.objects.openPrefix > ChunkFile.indexPrefix
        let opening = whole && remote ? ChunkFile.maxFileSize : max(ChunkFile.indexPrefix, store.objects.openPrefix)
        guard let (object, prefix) = try store.objects.open(store.key(for: hash), prefix: opening) else {
            throw VaultError(.corrupt, "chunk \(hash) is missing from the store")
        }
        self.object = object
        self.prefix = prefix
        self.store = store
        do {
            header = try prefix.withUnsafeBytes { ChunkFile.decodeHeader($0, fileSize: object.size) }
                .mapError { VaultError(.corrupt, "chunk \(hash): \($0.message)") }.get()
            guard header.hash == hash else { throw VaultError(.corrupt, "chunk \(hash) holds chunk \(header.hash)") }
            guard (header.codec == .sealedFrames) == (store.sealer != nil) else {
                throw VaultError(
                    .corrupt,
                    "chunk \(hash) is \(store.sealer == nil ? "sealed in an unencrypted" : "not sealed in an encrypted") repository"
                )
            }
        } catch {
            object.close()
            throw error
        }
    }

    func close() { object.close() }

    /// Bytes `range` of the chunk's object.
    private func bytes(_ range: Range<Int>) throws -> [UInt8] {
        guard range.upperBound <= object.size else { throw VaultError(.corrupt, "chunk \(header.hash) is truncated") }
        if range.upperBound <= prefix.count { return Array(prefix[range]) }
        return try [UInt8](unsafeUninitializedCapacity: range.count) { raw, count in
            try object.read(range, into: UnsafeMutableRawBufferPointer(raw))
            count = range.count
        }
    }

    /// Decodes `frames` (contiguous) into `destination`, exactly their plain length. A first
    /// format chunk has one frame: its whole payload.
    func decode(frames: Range<Int>, into destination: UnsafeMutableRawBufferPointer) throws {
        let hash = header.hash
        if header.version == 1 {
            let payload = try bytes(ChunkFile.headerSize..<(ChunkFile.headerSize + header.payloadLength))
            guard destination.count == header.plainLength else {
                throw VaultError(.corrupt, "chunk \(hash) is truncated")
            }
            try payload.withUnsafeBytes { raw in
                switch header.codec {
                case .raw: destination.copyMemory(from: raw)
                default:
                    guard store.decompressor.decompress(raw, into: destination) else {
                        throw VaultError(.corrupt, "chunk \(hash) does not decompress")
                    }
                }
            }
            return
        }
        var written = 0
        try forEachFrame(frames) { i, source in
            let plain = ChunkFile.frameLength(i, of: header.plainLength)
            guard written + plain <= destination.count else {
                throw VaultError(.corrupt, "chunk \(hash) frame \(i) overruns")
            }
            try decodeFrame(
                i, source, into: UnsafeMutableRawBufferPointer(rebasing: destination[written..<(written + plain)]))
            written += plain
        }
        guard written == destination.count else {
            throw VaultError(.corrupt, "chunk \(hash) decodes to the wrong length")
        }
    }

    /// Decodes each of `frames` (contiguous, of a chunk of the second format) into an array
    /// of its own, with one read of the store for all of them.
    func decodeEach(_ frames: Range<Int>) throws -> [(index: Int, bytes: [UInt8])] {
        var decoded: [(index: Int, bytes: [UInt8])] = []
        decoded.reserveCapacity(frames.count)
        try forEachFrame(frames) { i, source in
            let plain = ChunkFile.frameLength(i, of: header.plainLength)
            decoded.append(
                (
                    i,
                    try [UInt8](unsafeUninitializedCapacity: plain) { raw, count in
                        try decodeFrame(i, source, into: UnsafeMutableRawBufferPointer(raw))
                        count = plain
                    }
                ))
        }
        return decoded
    }

    /// Reads the stored bytes of `frames` (contiguous) at once and hands each frame's to `body`.
    private func forEachFrame(_ frames: Range<Int>, _ body: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        let first = header.frames[frames.lowerBound]
        let last = header.frames[frames.upperBound - 1]
        let start = first.offset
        let end = last.offset + last.length
        let bytes = try bytes(start..<end)
        try bytes.withUnsafeBytes { raw in
            for i in frames {
                let frame = header.frames[i]
                try body(
                    i,
                    UnsafeRawBufferPointer(
                        rebasing: raw[(frame.offset - start)..<(frame.offset - start + frame.length)]))
            }
        }
    }

    /// Checks (or opens, when sealed) and decompresses frame `i` into `target`, exactly its
    /// plain length.
    private func decodeFrame(_ i: Int, _ source: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer)
        throws
    {
        let hash = header.hash
        let decoded: Bool
        if let sealer = store.sealer {
            let opened = try sealer.open(
                source, context: ChunkFile.frameContext(hash, frame: i, plainLength: header.plainLength),
                what: "chunk \(hash) frame \(i)")
            decoded = opened.withUnsafeBytes { store.decompressor.decompress($0, into: target) }
        } else {
            guard ChunkFile.frameCheck(source) == header.frames[i].check else {
                throw VaultError(
                    .corrupt,
                    "chunk \(hash) frame \(i) is not the frame its index names (moved, replaced or without its checksum)"
                )
            }
            decoded = store.decompressor.decompress(source, into: target)
        }
        guard decoded else {
            throw VaultError(.corrupt, "chunk \(hash) frame \(i) does not decompress or fails its checksum")
        }
    }
}
