import Glibc

/// Content-addressed chunk files under `chunks/`, fanned out by the first byte of the hash.
/// A chunk is written once, through a temporary file linked into place, and never rewritten.
public final class ChunkStore: Sendable {
    public let root: String
    let modes: FileModes
    /// Seals frames and keys chunk ids in an encrypted repository.
    let sealer: Sealer?
    let decompressor = ZstdDecompressor()

    init(root: String, modes: FileModes, sealer: Sealer?) {
        self.root = root
        self.modes = modes
        self.sealer = sealer
    }

    /// The id a chunk with these plain bytes has here.
    func chunkId(of plain: UnsafeRawBufferPointer) -> ChunkHash { sealer.chunkId(of: plain) }

    /// Creates the 256 fan-out folders of a new repository.
    static func create(at root: String, modes: FileModes) throws {
        try Posix.makeDirectory(root, mode: modes.directory)
        for byte in 0..<256 { try Posix.makeDirectory("\(root)/\(hexByte(byte))", mode: modes.directory) }
    }

    func path(for hash: ChunkHash) -> String {
        let hex = hash.hex
        return "\(root)/\(hex.prefix(2))/\(hex)"
    }

    public func contains(_ hash: ChunkHash) -> Bool { Posix.exists(path(for: hash)) }

    /// Stores `plain` under `hash` unless the store already has it, as independent
    /// checksummed zstd frames; returns the bytes written to disk (0 when it was there).
    func store(_ plain: UnsafeRawBufferPointer, hash: ChunkHash, compressor: ZstdCompressor, scratch: inout [UInt8]) throws -> Int {
        let final = path(for: hash)
        if Posix.exists(final) { return 0 }
        var lengths = compressor.compressFrames(plain, frameSize: ChunkFile.frameSize, into: &scratch)
        var checks = [UInt32](repeating: 0, count: lengths.count)
        if sealer == nil {
            scratch.withUnsafeBytes { raw in
                var start = 0
                for (i, length) in lengths.enumerated() {
                    checks[i] = ChunkFile.frameCheck(UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)])) ?? 0
                    start += length
                }
            }
        }
        if let sealer {
            // Compressed, then sealed: each frame on its own, bound to the chunk and its place.
            var sealed: [UInt8] = []
            var start = 0
            scratch.withUnsafeBytes { raw in
                for (i, length) in lengths.enumerated() {
                    let frame = sealer.seal(UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)]),
                                            context: ChunkFile.frameContext(hash, frame: i, plainLength: plain.count))
                    sealed += frame
                    lengths[i] = frame.count
                    start += length
                }
            }
            scratch = sealed
        }
        let header = ChunkFile.encodeHeader(plainLength: plain.count, frames: Array(zip(lengths, checks)), hash: hash,
                                            sealed: sealer != nil)
        let payload = lengths.reduce(0, +)
        let temporary = Posix.temporaryName(for: final)
        let fd = try Posix.createFile(temporary, mode: modes.sealed, what: "cannot create chunk")
        do {
            try header.withUnsafeBytes { try Posix.writeAll(fd, $0, path: temporary) }
            try scratch.withUnsafeBytes { try Posix.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<payload]), path: temporary) }
            // Durable before it has its name: a later backup trusts any chunk it finds by name,
            // so one cut short by a power loss must never appear under it.
            if fsync(fd) != 0 { throw Posix.error("cannot sync chunk", temporary) }
            close(fd)
            FaultInjection.reached("chunk-written")
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        defer { unlink(temporary) }
        if link(temporary, final) != 0 {
            if errno == EEXIST { return 0 }
            throw Posix.error("cannot store chunk", final)
        }
        FaultInjection.reached("chunk-linked")
        return header.count + payload
    }

    /// Reads, decodes and checks one whole chunk into `destination`, which must be exactly
    /// the chunk's plain length, and checks it against its address (SHA-256): what `verify`
    /// and export of old chunks use. A missing, damaged or mismatched chunk throws `.corrupt`.
    public func load(_ hash: ChunkHash, into destination: UnsafeMutableRawBufferPointer) throws {
        let file = try ChunkReader(store: self, hash: hash)
        defer { file.close() }
        guard file.header.plainLength == destination.count else {
            throw VaultError(.corrupt, "chunk \(hash) is \(file.header.plainLength) bytes, expected \(destination.count)")
        }
        try file.decode(frames: 0..<max(1, file.header.frames.count), into: destination)
        guard chunkId(of: UnsafeRawBufferPointer(destination)) == hash else {
            throw VaultError(.corrupt, "chunk \(hash) fails its checksum")
        }
    }

    /// Decodes frames `frames` of a chunk of `length` plain bytes, for reads: each frame is
    /// checked by its own checksum, without hashing the whole chunk. A chunk of the first
    /// format (one frame) is decoded whole and checked by its address instead. Returns the
    /// decoded frames by index; a chunk of the first format gives all of its frames.
    func loadFrames(_ hash: ChunkHash, length: Int, frames: Range<Int>) throws -> [(index: Int, bytes: [UInt8])] {
        let file = try ChunkReader(store: self, hash: hash)
        defer { file.close() }
        guard file.header.plainLength == length else {
            throw VaultError(.corrupt, "chunk \(hash) is \(file.header.plainLength) bytes, expected \(length)")
        }
        if file.header.version == 1 {
            let whole = try [UInt8](unsafeUninitializedCapacity: length) { raw, count in
                let buffer = UnsafeMutableRawBufferPointer(raw)
                try file.decode(frames: 0..<1, into: buffer)
                guard chunkId(of: UnsafeRawBufferPointer(buffer)) == hash else {
                    throw VaultError(.corrupt, "chunk \(hash) fails its checksum")
                }
                count = length
            }
            return (0..<ChunkFile.frameCount(length)).map { i in
                (i, Array(whole[(i * ChunkFile.frameSize)..<(i * ChunkFile.frameSize + ChunkFile.frameLength(i, of: length))]))
            }
        }
        return try frames.map { i in
            let plain = ChunkFile.frameLength(i, of: length)
            let bytes = try [UInt8](unsafeUninitializedCapacity: plain) { raw, count in
                try file.decode(frames: i..<(i + 1), into: UnsafeMutableRawBufferPointer(raw))
                count = plain
            }
            return (i, bytes)
        }
    }

    /// Every stored chunk hash, for garbage collection and verification.
    func allHashes() -> [ChunkHash] {
        var hashes: [ChunkHash] = []
        for byte in 0..<256 {
            for name in Posix.listDirectory("\(root)/\(Self.hexByte(byte))") {
                if let hash = ChunkHash(hex: name) { hashes.append(hash) }
            }
        }
        return hashes
    }

    func remove(_ hash: ChunkHash) { unlink(path(for: hash)) }

    /// Temporary files of chunk writers (all of them: call only while no backup runs).
    func temporaries() -> [String] {
        (0..<256).flatMap { byte in
            Posix.staleTemporaries(in: "\(root)/\(Self.hexByte(byte))", olderThan: 0, now: .greatestFiniteMagnitude)
        }
    }

    static func hexByte(_ byte: Int) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[byte >> 4], digits[byte & 15]])
    }
}
