/// One chunk opened for reading: its checked header and frame index, and the decoding of
/// some of its frames with only the bytes they need read from the store.
struct ChunkReader {
    let header: ChunkFile.Header
    private let object: any ObjectReader
    /// The first bytes of the object, fetched when it was opened.
    private let prefix: [UInt8]
    let store: ChunkStore

    /// Opens and checks the chunk `hash`; a missing or damaged one throws `.corrupt`.
    init(store: ChunkStore, hash: ChunkHash) throws {
        let opening = max(ChunkFile.indexPrefix, store.objects.openPrefix)
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
                throw VaultError(.corrupt, "chunk \(hash) is \(store.sealer == nil ? "sealed in an unencrypted" : "not sealed in an encrypted") repository")
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
            guard destination.count == header.plainLength else { throw VaultError(.corrupt, "chunk \(hash) is truncated") }
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
        let first = header.frames[frames.lowerBound], last = header.frames[frames.upperBound - 1]
        let start = first.offset, end = last.offset + last.length
        let bytes = try bytes(start..<end)
        var written = 0
        try bytes.withUnsafeBytes { raw in
            for i in frames {
                let frame = header.frames[i]
                let plain = ChunkFile.frameLength(i, of: header.plainLength)
                guard written + plain <= destination.count else { throw VaultError(.corrupt, "chunk \(hash) frame \(i) overruns") }
                let source = UnsafeRawBufferPointer(rebasing: raw[(frame.offset - start)..<(frame.offset - start + frame.length)])
                let target = UnsafeMutableRawBufferPointer(rebasing: destination[written..<(written + plain)])
                let decoded: Bool
                if let sealer = store.sealer {
                    let opened = try sealer.open(source, context: ChunkFile.frameContext(hash, frame: i, plainLength: header.plainLength),
                                                 what: "chunk \(hash) frame \(i)")
                    decoded = opened.withUnsafeBytes { store.decompressor.decompress($0, into: target) }
                } else {
                    guard ChunkFile.frameCheck(source) == frame.check else {
                        throw VaultError(.corrupt, "chunk \(hash) frame \(i) is not the frame its index names (moved, replaced or without its checksum)")
                    }
                    decoded = store.decompressor.decompress(source, into: target)
                }
                guard decoded else {
                    throw VaultError(.corrupt, "chunk \(hash) frame \(i) does not decompress or fails its checksum")
                }
                written += plain
            }
        }
        guard written == destination.count else { throw VaultError(.corrupt, "chunk \(hash) decodes to the wrong length") }
    }
}
