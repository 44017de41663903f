/// The on-disk form of one chunk: a 48-byte header and the payload.
///
///     0  "VFSC"        magic
///     4  UInt8         format version (1 or 2)
///     5  UInt8         codec: version 1: 0 raw, 1 zstd; version 2: 2 zstd frames, 3 sealed
///                      zstd frames (AES-256-GCM: nonce, ciphertext, tag)
///     6  UInt16 LE     version 2: frame count F; version 1: 0
///     8  UInt32 LE     plain length
///     12 UInt32 LE     payload length
///     16 32 bytes      SHA-256 of the plain bytes (the chunk's address)
///     48 payload       version 1: one zstd frame or the raw bytes;
///                      version 2: the frame index (F entries of UInt32 LE length and
///                      UInt32 LE check), 32 bytes of SHA-256 over the header and the index,
///                      then F frames
///
/// In version 2, frame i holds plain bytes `[i * frameSize, (i + 1) * frameSize)`, each an
/// independent zstd frame with its content checksum (XXH64), so a small read decodes and
/// checks one frame, and reads never need the SHA-256 of the whole chunk. An entry's check is
/// the frame's own checksum (its last four bytes; 0 for sealed frames), and the digest binds
/// the index to the chunk's id: a frame moved within a chunk, taken from another chunk, or
/// stripped of its checksum is refused before it is decoded.
import Crypto

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
    static let maxFileSize = indexPrefix + maxFrames * (maxFrameLength + Sealer.overhead)
    static let indexEntrySize = 8
    static let digestSize = 32
    /// zstd's ZSTD_compressBound for one frame: what a frame of incompressible bytes takes.
    static let maxFrameLength = frameSize + frameSize / 256 + 64

    enum Codec: UInt8 { case raw = 0, zstd = 1, frames = 2, sealedFrames = 3 }

    struct Header {
        var version: UInt8
        var codec: Codec
        var plainLength: Int
        var payloadLength: Int
        var hash: ChunkHash
        /// Version 2: where each frame starts in the file, its length and its check.
        var frames: [(offset: Int, length: Int, check: UInt32)] = []
    }

    /// Number of frames a chunk of `plainLength` bytes has in version 2.
    static func frameCount(_ plainLength: Int) -> Int { (plainLength + frameSize - 1) / frameSize }

    /// Plain length of frame `index` of a chunk of `plainLength` bytes.
    static func frameLength(_ index: Int, of plainLength: Int) -> Int {
        min(frameSize, plainLength - index * frameSize)
    }

    /// The header, frame index and digest of a version-2 chunk whose frames are `frames`.
    static func encodeHeader(plainLength: Int, frames: [(length: Int, check: UInt32)], hash: ChunkHash, sealed: Bool)
        -> [UInt8]
    {
        var out = magic
        out.append(2)
        out.append(sealed ? Codec.sealedFrames.rawValue : Codec.frames.rawValue)
        out.append(contentsOf: littleEndian(UInt16(frames.count)))
        out.append(contentsOf: littleEndian(UInt32(plainLength)))
        let payload = indexEntrySize * frames.count + digestSize + frames.reduce(0) { $0 + $1.length }
        out.append(contentsOf: littleEndian(UInt32(payload)))
        out.append(contentsOf: hash.bytes)
        for frame in frames {
            out.append(contentsOf: littleEndian(UInt32(frame.length)))
            out.append(contentsOf: littleEndian(frame.check))
        }
        out.append(contentsOf: SHA256.hash(data: out))
        return out
    }

    /// The check a frame index keeps for a zstd frame: its content checksum (the last four
    /// bytes), or nil when the frame does not carry one.
    static func frameCheck(_ frame: UnsafeRawBufferPointer) -> UInt32? {
        // A zstd frame: magic 0xFD2FB528, then the descriptor whose bit 2 says a checksum ends it.
        guard frame.count >= 9, frame.loadUnaligned(as: UInt32.self) == UInt32(0xFD2F_B528).littleEndian,
            frame[4] & 0x04 != 0
        else { return nil }
        return frame.loadUnaligned(fromByteOffset: frame.count - 4, as: UInt32.self).littleEndian
    }

    /// What a sealed frame is bound to: the chunk's id, the frame's index and the chunk's
    /// plain length, so a frame moved, a chunk renamed or truncated fails to open.
    static func frameContext(_ hash: ChunkHash, frame: Int, plainLength: Int) -> [UInt8] {
        hash.bytes + littleEndian(UInt32(frame)) + littleEndian(UInt32(plainLength))
    }

    /// Bytes to read from the start of a file to have its header and frame index.
    static let indexPrefix = headerSize + indexEntrySize * maxFrames + digestSize

    /// Parses and checks a header (and a version-2 frame index) from the first bytes of a
    /// chunk file of `fileSize` bytes. Every field is checked against what a repository
    /// allows before it is used, so damage is an error, never a trap or an over-read.
    static func decodeHeader(_ bytes: UnsafeRawBufferPointer, fileSize: Int) -> Result<Header, VaultError> {
        func bad(_ why: String) -> Result<Header, VaultError> { .failure(VaultError(.corrupt, "chunk file \(why)")) }
        guard bytes.count >= headerSize, fileSize >= headerSize else { return bad("is truncated") }
        guard Array(bytes[0..<4]) == magic else { return bad("has a bad magic") }
        let version = bytes[4]
        guard version == 1 || version == 2 else { return bad("has unknown version \(version)") }
        guard let codec = Codec(rawValue: bytes[5]), (version == 2) == (codec == .frames || codec == .sealedFrames)
        else {
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
        var header = Header(
            version: version, codec: codec, plainLength: plain, payloadLength: payload,
            hash: ChunkHash(bytes: bytes[16..<48]))
        switch codec {
        case .raw:
            guard payload == plain else { return bad("has a \(payload)-byte payload for \(plain) plain bytes") }
        case .zstd:
            guard payload < plain else { return bad("has a \(payload)-byte payload for \(plain) plain bytes") }
        case .frames, .sealedFrames:
            let limit = maxFrameLength + (codec == .sealedFrames ? Sealer.overhead : 0)
            guard count == frameCount(plain) else { return bad("has \(count) frames for \(plain) plain bytes") }
            let indexEnd = headerSize + indexEntrySize * count
            guard bytes.count >= indexEnd + digestSize else { return bad("has a truncated frame index") }
            guard
                Array(SHA256.hash(data: UnsafeRawBufferPointer(rebasing: bytes[0..<indexEnd])))
                    == Array(bytes[indexEnd..<(indexEnd + digestSize)])
            else {
                return bad("has a damaged header or frame index (digest mismatch)")
            }
            var offset = indexEnd + digestSize
            for i in 0..<count {
                let at = headerSize + indexEntrySize * i
                let length = Int(bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian)
                let check = bytes.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self).littleEndian
                guard length > 0, length <= limit else { return bad("gives frame \(i) a length of \(length) bytes") }
                header.frames.append((offset, length, check))
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
