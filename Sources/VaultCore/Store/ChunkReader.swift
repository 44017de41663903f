import Glibc

/// One chunk file opened for reading: its checked header and frame index, and the decoding
/// of some of its frames with only the bytes they need read from disk.
struct ChunkReader {
    let header: ChunkFile.Header
    private let fd: Int32
    private let path: String
    private let store: ChunkStore

    /// Opens and checks the chunk `hash`; a missing or damaged file throws `.corrupt`.
    init(store: ChunkStore, hash: ChunkHash) throws {
        let path = store.path(for: hash)
        let fd: Int32
        do {
            fd = try Posix.open(path, O_RDONLY)
        } catch let error as VaultError where error.code == .notFound {
            throw VaultError(.corrupt, "chunk \(hash) is missing from the store")
        }
        self.path = path
        self.fd = fd
        self.store = store
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let error = Posix.error("cannot stat", path)
            Glibc.close(fd)
            throw error
        }
        let size = Int(st.st_size)
        var prefix = [UInt8](repeating: 0, count: min(size, ChunkFile.indexPrefix))
        do {
            let n = try prefix.withUnsafeMutableBytes { try Posix.pread(fd, $0.baseAddress!, $0.count, 0, path: path) }
            prefix.removeLast(prefix.count - n)
            header = try prefix.withUnsafeBytes { ChunkFile.decodeHeader($0, fileSize: size) }
                .mapError { VaultError(.corrupt, "chunk \(hash): \($0.message)") }.get()
        } catch {
            Glibc.close(fd)
            throw error
        }
        guard header.hash == hash else {
            Glibc.close(fd)
            throw VaultError(.corrupt, "chunk \(hash) holds chunk \(header.hash)")
        }
        guard (header.codec == .sealedFrames) == (store.sealer != nil) else {
            Glibc.close(fd)
            throw VaultError(.corrupt, "chunk \(hash) is \(store.sealer == nil ? "sealed in an unencrypted" : "not sealed in an encrypted") repository")
        }
    }

    func close() { Glibc.close(fd) }

    /// Decodes `frames` (contiguous) into `destination`, exactly their plain length. A first
    /// format chunk has one frame: its whole payload.
    func decode(frames: Range<Int>, into destination: UnsafeMutableRawBufferPointer) throws {
        let hash = header.hash
        if header.version == 1 {
            var payload = [UInt8](repeating: 0, count: header.payloadLength)
            let n = try payload.withUnsafeMutableBytes { try Posix.pread(fd, $0.baseAddress!, $0.count, Int64(ChunkFile.headerSize), path: path) }
            guard n == payload.count, destination.count == header.plainLength else { throw VaultError(.corrupt, "chunk \(hash) is truncated") }
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
        let bytes = try [UInt8](unsafeUninitializedCapacity: end - start) { raw, count in
            count = try Posix.pread(fd, raw.baseAddress!, end - start, Int64(start), path: path)
        }
        guard bytes.count == end - start else { throw VaultError(.corrupt, "chunk \(hash) is truncated") }
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
