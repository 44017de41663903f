/// The on-disk form of one chunk: a 48-byte header and the payload.
///
///     0  "VFSC"        magic
///     4  UInt8         format version (1 or 2)
///     5  UInt8         codec: version 1: 0 raw, 1 zstd; version 2: 2 zstd frames
///     6  UInt16 LE     version 2: frame count F; version 1: 0
///     8  UInt32 LE     plain length
///     12 UInt32 LE     payload length
///     16 32 bytes      SHA-256 of the plain bytes (the chunk's address)
///     48 payload       version 1: one zstd frame or the raw bytes;
///                      version 2: F UInt32 LE frame lengths, then F zstd frames
///
/// In version 2, frame i holds plain bytes `[i * frameSize, (i + 1) * frameSize)`, each an
/// independent zstd frame with its content checksum (XXH64), so a small read decodes and
/// checks one frame, and reads never need the SHA-256 of the whole chunk.
enum ChunkFile {
    static let headerSize = 48
    static let magic: [UInt8] = Array("VFSC".utf8)
    /// The plain bytes one frame of a version-2 chunk holds (the last may hold fewer).
    static let frameSize = 64 << 10
    /// The largest chunk any repository may hold (the largest chunk size `init` accepts).
    static let maxPlainLength = 4 << 20
    static let maxFrames = maxPlainLength / frameSize
    /// The largest chunk file: a header, a frame index and frames never much bigger than
    /// the plain bytes (zstd's bound for incompressible input).
    static let maxFileSize = headerSize + 4 * maxFrames + maxFrames * maxFrameLength
    /// zstd's ZSTD_compressBound for one frame: what a frame of incompressible bytes takes.
    static let maxFrameLength = frameSize + frameSize / 256 + 64

    enum Codec: UInt8 { case raw = 0, zstd = 1, frames = 2 }

    struct Header {
        var version: UInt8
        var codec: Codec
        var plainLength: Int
        var payloadLength: Int
        var hash: ChunkHash
        /// Version 2: where each frame starts in the file, and its length.
        var frames: [(offset: Int, length: Int)] = []
    }

    /// Number of frames a chunk of `plainLength` bytes has in version 2.
    static func frameCount(_ plainLength: Int) -> Int { (plainLength + frameSize - 1) / frameSize }

    /// Plain length of frame `index` of a chunk of `plainLength` bytes.
    static func frameLength(_ index: Int, of plainLength: Int) -> Int { min(frameSize, plainLength - index * frameSize) }

    /// The header and frame index of a version-2 chunk whose frames have `lengths`.
    static func encodeHeader(plainLength: Int, frameLengths lengths: [Int], hash: ChunkHash) -> [UInt8] {
        var out = magic
        out.append(2)
        out.append(Codec.frames.rawValue)
        out.append(contentsOf: littleEndian(UInt16(lengths.count)))
        out.append(contentsOf: littleEndian(UInt32(plainLength)))
        out.append(contentsOf: littleEndian(UInt32(4 * lengths.count + lengths.reduce(0, +))))
        out.append(contentsOf: hash.bytes)
        for length in lengths { out.append(contentsOf: littleEndian(UInt32(length))) }
        return out
    }

    /// Bytes to read from the start of a file to have its header and frame index.
    static let indexPrefix = headerSize + 4 * maxFrames

    /// Parses and checks a header (and a version-2 frame index) from the first bytes of a
    /// chunk file of `fileSize` bytes. Every field is checked against what a repository
    /// allows before it is used, so damage is an error, never a trap or an over-read.
    static func decodeHeader(_ bytes: UnsafeRawBufferPointer, fileSize: Int) -> Result<Header, VaultError> {
        func bad(_ why: String) -> Result<Header, VaultError> { .failure(VaultError(.corrupt, "chunk file \(why)")) }
        guard bytes.count >= headerSize, fileSize >= headerSize else { return bad("is truncated") }
        guard Array(bytes[0..<4]) == magic else { return bad("has a bad magic") }
        let version = bytes[4]
        guard version == 1 || version == 2 else { return bad("has unknown version \(version)") }
        guard let codec = Codec(rawValue: bytes[5]), (version == 2) == (codec == .frames) else {
            return bad("has unknown codec \(bytes[5])")
        }
        let count = Int(bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self).littleEndian)
        let plain = Int(bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
        let payload = Int(bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian)
        guard (1...maxPlainLength).contains(plain) else {
            return bad("gives a plain length of \(plain) bytes, past the \(maxPlainLength) a chunk may have")
        }
        guard fileSize == headerSize + payload else {
            return bad("holds \(fileSize - headerSize) payload bytes, header says \(payload)")
        }
        var header = Header(version: version, codec: codec, plainLength: plain, payloadLength: payload,
                            hash: ChunkHash(bytes: bytes[16..<48]))
        switch codec {
        case .raw:
            guard payload == plain else { return bad("has a \(payload)-byte payload for \(plain) plain bytes") }
        case .zstd:
            guard payload < plain else { return bad("has a \(payload)-byte payload for \(plain) plain bytes") }
        case .frames:
            guard count == frameCount(plain) else { return bad("has \(count) frames for \(plain) plain bytes") }
            guard bytes.count >= headerSize + 4 * count else { return bad("has a truncated frame index") }
            var offset = headerSize + 4 * count
            for i in 0..<count {
                let length = Int(bytes.loadUnaligned(fromByteOffset: headerSize + 4 * i, as: UInt32.self).littleEndian)
                guard length > 0, length <= maxFrameLength else { return bad("gives frame \(i) a length of \(length) bytes") }
                header.frames.append((offset, length))
                offset += length
            }
            guard offset == fileSize else { return bad("has frames ending at \(offset) in a \(fileSize)-byte file") }
        }
        return .success(header)
    }

    static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}
