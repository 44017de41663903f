import Glibc

/// Content-addressed chunk files under `chunks/`, fanned out by the first byte of the hash.
/// A chunk is written once, through a temporary file linked into place, and never rewritten.
public final class ChunkStore: Sendable {
    public let root: String
    let modes: FileModes
    private let decompressor = ZstdDecompressor()

    init(root: String, modes: FileModes) {
        self.root = root
        self.modes = modes
    }

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

    /// Stores `plain` under `hash` unless the store already has it; returns the bytes
    /// written to disk (0 when the chunk was already there).
    func store(_ plain: UnsafeRawBufferPointer, hash: ChunkHash, compressor: ZstdCompressor, scratch: inout [UInt8]) throws -> Int {
        let final = path(for: hash)
        if Posix.exists(final) { return 0 }
        let compressed = compressor.compress(plain, into: &scratch)
        let header = ChunkFile.encodeHeader(.init(
            codec: compressed == nil ? .raw : .zstd, plainLength: plain.count,
            payloadLength: compressed ?? plain.count, hash: hash))
        let temporary = Posix.temporaryName(for: final)
        let fd = try Posix.createFile(temporary, mode: modes.sealed, what: "cannot create chunk")
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
        return header.count + (compressed ?? plain.count)
    }

    /// Reads, decodes and verifies one chunk into `destination`, which must be exactly the
    /// chunk's plain length. A missing, damaged or mismatched chunk throws `.corrupt`.
    public func load(_ hash: ChunkHash, into destination: UnsafeMutableRawBufferPointer) throws {
        let file = path(for: hash)
        let bytes: [UInt8]
        do {
            bytes = try Posix.readFile(file, limit: ChunkFile.maxFileSize)
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
