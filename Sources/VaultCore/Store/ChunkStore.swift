import Glibc

/// Content-addressed chunk files under `chunks/`, fanned out by the first byte of the hash.
/// A chunk is written once, through a temporary file linked into place, and never rewritten.
public final class ChunkStore: Sendable {
    public let root: String
    private let decompressor = ZstdDecompressor()

    init(root: String) {
        self.root = root
    }

    /// Creates the 256 fan-out folders of a new repository.
    static func create(at root: String) throws {
        try Posix.makeDirectory(root)
        for byte in 0..<256 { try Posix.makeDirectory("\(root)/\(hexByte(byte))") }
    }

    func path(for hash: ChunkHash) -> String {
        let hex = hash.hex
        return "\(root)/\(hex.prefix(2))/\(hex)"
    }

    public func contains(_ hash: ChunkHash) -> Bool { Posix.exists(path(for: hash)) }

    /// Stores `plain` under `hash` unless the store already has it; returns the bytes
    /// written to disk (0 when the chunk was already there).
    func store(_ plain: UnsafeRawBufferPointer, hash: ChunkHash, compressor: ZstdCompressor, scratch: inout [UInt8]) throws -> Int {
        let final = path(for: hash)
        if Posix.exists(final) { return 0 }
        let compressed = compressor.compress(plain, into: &scratch)
        let header = ChunkFile.encodeHeader(.init(
            codec: compressed == nil ? .raw : .zstd, plainLength: plain.count,
            payloadLength: compressed ?? plain.count, hash: hash))
        let temporary = "\(final).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try Posix.open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode: 0o444, what: "cannot create chunk")
        do {
            try header.withUnsafeBytes { try Posix.writeAll(fd, $0, path: temporary) }
            if let compressed {
                try scratch.withUnsafeBytes { try Posix.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<compressed]), path: temporary) }
            } else {
                try Posix.writeAll(fd, plain, path: temporary)
            }
            // Durable before it has its name: a later backup trusts any chunk it finds by name,
            // so one cut short by a power loss must never appear under it.
            if fsync(fd) != 0 { throw Posix.error("cannot sync chunk", temporary) }
            close(fd)
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
        return header.count + (compressed ?? plain.count)
    }

    /// Reads, decodes and verifies one chunk into `destination`, which must be exactly the
    /// chunk's plain length. A missing, damaged or mismatched chunk throws `.corrupt`.
    public func load(_ hash: ChunkHash, into destination: UnsafeMutableRawBufferPointer) throws {
        let file = path(for: hash)
        let bytes: [UInt8]
        do {
            bytes = try Posix.readFile(file)
        } catch let error as VaultError where error.code == .notFound {
            throw VaultError(.corrupt, "chunk \(hash) is missing from the store")
        }
        try bytes.withUnsafeBytes { raw in
            let header = try ChunkFile.decodeHeader(raw).get()
            guard header.hash == hash else { throw VaultError(.corrupt, "chunk \(hash) holds chunk \(header.hash)") }
            guard header.plainLength == destination.count else {
                throw VaultError(.corrupt, "chunk \(hash) is \(header.plainLength) bytes, expected \(destination.count)")
            }
            let payload = UnsafeRawBufferPointer(rebasing: raw[ChunkFile.headerSize...])
            switch header.codec {
            case .raw: destination.copyMemory(from: payload)
            case .zstd:
                guard decompressor.decompress(payload, into: destination) else {
                    throw VaultError(.corrupt, "chunk \(hash) does not decompress")
                }
            }
        }
        guard ChunkHash(of: UnsafeRawBufferPointer(destination)) == hash else {
            throw VaultError(.corrupt, "chunk \(hash) fails its checksum")
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

    /// Removes temporary files left by writers that died; only ones older than an hour, so a
    /// running backup's are never touched.
    func removeStaleTemporaries(now: Double) {
        for byte in 0..<256 {
            let dir = "\(root)/\(Self.hexByte(byte))"
            for name in Posix.listDirectory(dir) where name.contains(".tmp-") {
                var st = stat()
                if stat("\(dir)/\(name)", &st) == 0 && Double(st.st_mtim.tv_sec) < now - 3600 { unlink("\(dir)/\(name)") }
            }
        }
    }

    static func hexByte(_ byte: Int) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[byte >> 4], digits[byte & 15]])
    }
}
