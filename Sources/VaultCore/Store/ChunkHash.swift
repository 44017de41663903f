import Crypto

/// The SHA-256 of a chunk's plain bytes: its address in the store.
public struct ChunkHash: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    let words: (UInt64, UInt64, UInt64, UInt64)

    public init(bytes: some Collection<UInt8>) {
        precondition(bytes.count == Self.byteCount)
        var w: [UInt64] = [0, 0, 0, 0]
        for (i, byte) in bytes.enumerated() { w[i / 8] = w[i / 8] << 8 | UInt64(byte) }
        words = (w[0], w[1], w[2], w[3])
    }

    /// Hashes `data` with SHA-256.
    public init(of data: UnsafeRawBufferPointer) {
        self.init(bytes: Array(SHA256.hash(data: data)))
    }

    public init?(hex: String) {
        guard hex.count == 64 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] {
        [words.0, words.1, words.2, words.3].flatMap { word in
            (0..<8).map { UInt8(truncatingIfNeeded: word >> (56 - 8 * $0)) }
        }
    }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    public static func == (a: ChunkHash, b: ChunkHash) -> Bool { a.words == b.words }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
    }
}

/// What one chunk position of a disk holds: nothing but zeros, or a stored chunk.
public enum ChunkRef: Hashable, Sendable {
    case zero
    case data(ChunkHash)
}

extension UnsafeRawBufferPointer {
    /// True when every byte is zero; scans eight bytes at a time.
    var isAllZero: Bool {
        let words = count / 8
        if words > 0 {
            let base = baseAddress!
            var acc: UInt64 = 0
            var i = 0
            while i < words {
                acc |= base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                if i & 1023 == 1023 && acc != 0 { return false }
                i += 1
            }
            if acc != 0 { return false }
        }
        for i in (words * 8)..<count where self[i] != 0 { return false }
        return true
    }
}
