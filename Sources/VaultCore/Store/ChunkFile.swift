/// The on-disk form of one chunk: a 48-byte header and the payload.
///
///     0  "VFSC"        magic
///     4  UInt8         format version (1)
///     5  UInt8         codec: 0 raw, 1 zstd
///     6  UInt16        reserved
///     8  UInt32 LE     plain length
///     12 UInt32 LE     payload length
///     16 32 bytes      SHA-256 of the plain bytes (the chunk's address)
///     48 payload
enum ChunkFile {
    static let headerSize = 48
    static let magic: [UInt8] = Array("VFSC".utf8)
    static let version: UInt8 = 1
    /// The largest chunk any repository may hold (the largest chunk size `init` accepts).
    static let maxPlainLength = 4 << 20
    /// The largest chunk file: a header and a payload never bigger than the plain bytes.
    static let maxFileSize = headerSize + maxPlainLength

    enum Codec: UInt8 { case raw = 0, zstd = 1 }

    struct Header {
        var codec: Codec
        var plainLength: Int
        var payloadLength: Int
        var hash: ChunkHash
    }

    static func encodeHeader(_ header: Header) -> [UInt8] {
        var out = magic
        out.append(version)
        out.append(header.codec.rawValue)
        out.append(contentsOf: [0, 0])
        out.append(contentsOf: littleEndian(UInt32(header.plainLength)))
        out.append(contentsOf: littleEndian(UInt32(header.payloadLength)))
        out.append(contentsOf: header.hash.bytes)
        return out
    }

    /// Parses and checks a header; the reason is returned for the log when it is bad.
    static func decodeHeader(_ bytes: UnsafeRawBufferPointer) -> Result<Header, VaultError> {
        guard bytes.count >= headerSize else { return .failure(VaultError(.corrupt, "chunk file is truncated")) }
        guard Array(bytes[0..<4]) == magic else { return .failure(VaultError(.corrupt, "chunk file has a bad magic")) }
        guard bytes[4] == version else { return .failure(VaultError(.corrupt, "chunk file has unknown version \(bytes[4])")) }
        guard let codec = Codec(rawValue: bytes[5]) else { return .failure(VaultError(.corrupt, "chunk file has unknown codec \(bytes[5])")) }
        let plain = Int(bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
        let payload = Int(bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian)
        guard (1...maxPlainLength).contains(plain) else {
            return .failure(VaultError(.corrupt, "chunk file gives a plain length of \(plain) bytes, past the \(maxPlainLength) a chunk may have"))
        }
        guard bytes.count == headerSize + payload else {
            return .failure(VaultError(.corrupt, "chunk file holds \(bytes.count - headerSize) payload bytes, header says \(payload)"))
        }
        // Only a payload smaller than the plain bytes is stored compressed; raw is stored as is.
        guard codec == .raw ? payload == plain : payload < plain else {
            return .failure(VaultError(.corrupt, "chunk file has a \(payload)-byte payload for \(plain) plain bytes"))
        }
        let hash = ChunkHash(bytes: bytes[16..<48])
        return .success(Header(codec: codec, plainLength: plain, payloadLength: payload, hash: hash))
    }

    static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}
