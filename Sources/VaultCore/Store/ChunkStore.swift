import Glibc

/// Content-addressed chunks, each an object `chunks/<first byte>/<id>` in the repository's
/// object store. A chunk is written once and never rewritten.
public final class ChunkStore: Sendable {
    let objects: any ObjectStore
    /// Seals frames and keys chunk ids in an encrypted repository.
    let sealer: Sealer?
    let decompressor = ZstdDecompressor()
    /// The chunks a shared store holds, so a backup need not ask it about each.
    let index: ChunkIndex?

    init(objects: any ObjectStore, sealer: Sealer?, index: ChunkIndex? = nil) {
        self.objects = objects
        self.sealer = sealer
        self.index = index
    }

    /// The id a chunk with these plain bytes has here.
    func chunkId(of plain: UnsafeRawBufferPointer) -> ChunkHash { sealer.chunkId(of: plain) }

    static let prefix = "chunks/"

    /// Prepares a new repository's store for chunks: 256 fan-out prefixes.
    static func prepare(_ objects: any ObjectStore) throws {
        try objects.prepare(prefixes: ["chunks"] + (0..<256).map { "chunks/\(hexByte($0))" })
    }

    func key(for hash: ChunkHash) -> String {
        let hex = hash.hex
        return "\(Self.prefix)\(hex.prefix(2))/\(hex)"
    }

    /// Where a chunk is, for messages and for tests that damage one.
    public func location(of hash: ChunkHash) -> String { "\(objects.location)/\(key(for: hash))" }

    /// Stores `plain` under `hash` unless the store already has it, as independent
    /// checksummed zstd frames; returns the bytes written (0 when it was there). With an
    /// index, a chunk it names is not asked about, and one it lacks is written at once (a
    /// conditional write, so one stored meanwhile is left as it was).
    func store(_ plain: UnsafeRawBufferPointer, hash: ChunkHash, compressor: ZstdCompressor, scratch: inout [UInt8])
        throws -> Int
    {
        if let index {
            if index.contains(hash) { return 0 }
        } else if try objects.exists(key(for: hash)) {
            return 0
        }
        let lengths = try compressor.compressFrames(plain, frameSize: ChunkFile.frameSize, into: &scratch)
        let payload = lengths.reduce(0, +)
        var object: [UInt8]
        if let sealer {
            // Compressed, then sealed: each frame on its own, bound to the chunk and its place,
            // straight after the header. `scratch` stays the worker's, at its full size.
            let sealed = lengths.map { (length: $0 + Sealer.overhead, check: UInt32(0)) }
            object = ChunkFile.encodeHeader(plainLength: plain.count, frames: sealed, hash: hash, sealed: true)
            let header = object.count
            object.reserveCapacity(header + payload + lengths.count * Sealer.overhead)
            scratch.withUnsafeBytes { raw in
                var start = 0
                for (i, length) in lengths.enumerated() {
                    sealer.seal(
                        UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)]),
                        context: ChunkFile.frameContext(hash, frame: i, plainLength: plain.count), appendingTo: &object)
                    start += length
                }
            }
            assert(
                object.count == header + payload + lengths.count * Sealer.overhead,
                "a sealed frame is not its length plus the overhead")
        } else {
            var frames: [(length: Int, check: UInt32)] = []
            scratch.withUnsafeBytes { raw in
                var start = 0
                for length in lengths {
                    frames.append(
                        (
                            length,
                            ChunkFile.frameCheck(UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)])) ?? 0
                        ))
                    start += length
                }
            }
            object = ChunkFile.encodeHeader(plainLength: plain.count, frames: frames, hash: hash, sealed: false)
            object.append(contentsOf: scratch[0..<payload])
        }
        let stored = try objects.putIfAbsent(key(for: hash), object)
        index?.insert(hash)
        return stored ? object.count : 0
    }

    /// Reads, decodes and checks one whole chunk into `destination`, which must be exactly
    /// the chunk's plain length, and checks it against its address (SHA-256): what `verify`
    /// and export of old chunks use. A missing, damaged or mismatched chunk throws `.corrupt`.
    public func load(_ hash: ChunkHash, into destination: UnsafeMutableRawBufferPointer) throws {
        try reading(hash) { try $0.load(hash, into: destination) }
    }

    /// Runs `body` on the chunk `hash` opened (whole, with `whole`, from a remote store). When
    /// the copy a disk cache kept fails its checks, the copy is dropped and `body` runs once
    /// more on the store's.
    func reading<T>(_ hash: ChunkHash, whole: Bool = false, _ body: (ChunkReader) throws -> T) throws -> T {
        func attempt() throws -> T {
            let file = try ChunkReader(store: self, hash: hash, whole: whole)
            defer { file.close() }
            return try body(file)
        }
        guard let cache = objects as? DiskCachedStore else { return try attempt() }
        do {
            return try attempt()
        } catch let error as VaultError where error.code == .corrupt && cache.evict(key(for: hash)) {
            do {
                return try attempt()
            } catch {
                // Damaged in the store too: keep no copy of it.
                cache.evict(key(for: hash))
                throw error
            }
        }
    }
}

extension ChunkReader {
    /// Decodes the whole chunk into `destination` (exactly its plain length) and checks it
    /// against its address.
    func load(_ hash: ChunkHash, into destination: UnsafeMutableRawBufferPointer) throws {
        let file = self
        guard file.header.plainLength == destination.count else {
            throw VaultError(
                .corrupt, "chunk \(hash) is \(file.header.plainLength) bytes, expected \(destination.count)")
        }
        try file.decode(frames: 0..<max(1, file.header.frames.count), into: destination)
        guard store.chunkId(of: UnsafeRawBufferPointer(destination)) == hash else {
            throw VaultError(.corrupt, "chunk \(hash) fails its checksum")
        }
    }

    /// Decodes and checks the whole chunk, at whatever length its header gives.
    func checkWhole(_ hash: ChunkHash) throws {
        var plain = [UInt8](repeating: 0, count: header.plainLength)
        try plain.withUnsafeMutableBytes { try load(hash, into: $0) }
    }
}

extension ChunkStore {
    /// Decodes frames `frames` of a chunk of `length` plain bytes, for reads: each frame is
    /// checked by its own checksum, without hashing the whole chunk. A chunk of the first
    /// format (one frame) is decoded whole and checked by its address instead. Returns the
    /// decoded frames by index; a chunk of the first format gives all of its frames.
    func loadFrames(_ hash: ChunkHash, length: Int, frames: Range<Int>) throws -> [(index: Int, bytes: [UInt8])] {
        try reading(hash, whole: frames.count == ChunkFile.frameCount(length)) { file in
            try decodeFrames(of: file, hash, length: length, frames)
        }
    }

    private func decodeFrames(of file: ChunkReader, _ hash: ChunkHash, length: Int, _ frames: Range<Int>) throws -> [(
        index: Int, bytes: [UInt8]
    )] {
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
                (
                    i,
                    Array(
                        whole[
                            (i * ChunkFile.frameSize)..<(i * ChunkFile.frameSize + ChunkFile.frameLength(i, of: length))
                        ])
                )
            }
        }
        return try file.decodeEach(frames)
    }

    /// Every stored chunk and its size, for garbage collection, verification and `info`.
    func allChunks() throws -> [(hash: ChunkHash, size: Int64)] {
        try objects.list(prefix: Self.prefix).compactMap { object in
            guard let name = object.key.split(separator: "/").last, let hash = ChunkHash(hex: String(name)),
                object.key == key(for: hash)
            else { return nil }
            return (hash, object.size)
        }
    }

    func remove(_ hash: ChunkHash) throws { try objects.delete(key(for: hash)) }

    static func hexByte(_ byte: Int) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[byte >> 4], digits[byte & 15]])
    }
}
