import Foundation

/// What collections keep in the store between runs and tell every host: the chunks they
/// marked (`gc/marks`) and the chunks they removed (`gc/removed/<generation>`).

/// The ids each collection in a shared store removed, one object per collection, written
/// before the chunks go: `gc/removed/<20-digit generation>`, numbered from 1 without gaps. An
/// 8-byte tag, then 32 bytes per id. The newest `kept` are kept; every host's chunk index
/// takes them in before a backup (`ChunkIndex.catchUp`).
enum RemovalRecords {
    static let prefix = "gc/removed/"
    static let tag = "VFSGCR1\n"
    static let kept: UInt64 = 64

    static func key(_ generation: UInt64) -> String {
        let digits = String(generation)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// The generations stored, oldest first.
    static func generations(in objects: any ObjectStore) throws -> [UInt64] {
        try objects.list(prefix: prefix).compactMap { UInt64($0.key.dropFirst(prefix.count)) }.sorted()
    }

    /// The ids record `generation` names; nil when it is missing or damaged.
    static func read(_ generation: UInt64, from objects: any ObjectStore) throws -> [ChunkHash]? {
        guard let bytes = try objects.get(key(generation), limit: 1 << 34) else { return nil }
        return ChunkIdList.decode(bytes, tag: tag)
    }

    /// Writes the next record, naming `chunks`, and prunes the oldest beyond `kept`: oldest
    /// first, stopping at the first that fails, so the records left never have a gap.
    static func write(_ chunks: some Sequence<ChunkHash>, to objects: any ObjectStore) throws {
        let generations = try generations(in: objects)
        let next = (generations.last ?? 0) + 1
        guard try objects.putIfAbsent(key(next), ChunkIdList.encode(chunks, tag: tag)) else {
            throw VaultError(
                .busy, "another garbage collection recorded removal \(next) at the same time; run gc again")
        }
        for old in generations where old + kept <= next {
            do { try objects.delete(key(old)) } catch { break }
        }
    }
}

/// A list of chunk ids as bytes: an 8-byte tag naming what it is, then 32 bytes per id.
enum ChunkIdList {
    static func encode(_ ids: some Sequence<ChunkHash>, tag: String) -> [UInt8] {
        var bytes = Array(tag.utf8)
        for id in ids { bytes += id.bytes }
        return bytes
    }

    /// The ids, or nil when the tag differs or the list is cut short.
    static func decode(_ bytes: [UInt8], tag: String) -> [ChunkHash]? {
        let start = tag.utf8.count
        guard bytes.count >= start, bytes.starts(with: tag.utf8), (bytes.count - start) % ChunkHash.byteCount == 0
        else { return nil }
        return stride(from: start, to: bytes.count, by: ChunkHash.byteCount).map {
            ChunkHash(bytes: bytes[$0..<($0 + ChunkHash.byteCount)])
        }
    }
}

/// Unused chunks waiting out the grace period, and when the store was last listed: the
/// object `gc/marks`, written only by a collection. An 8-byte tag, the time of the last
/// listing (8 bytes), then per chunk its id, when it was marked and its size (-1 unknown).
struct Marks {
    struct Mark {
        var at: TimeInterval
        var size: Int64
    }

    static let key = "gc/marks"
    static let tag = "VFSGCM1\n"
    var listedAt: TimeInterval = 0
    var chunks: [ChunkHash: Mark] = [:]

    static func load(_ objects: any ObjectStore) throws -> Marks {
        guard let bytes = try objects.get(Marks.key, limit: 1 << 34) else { return Marks() }
        let head = tag.utf8.count + 8
        let entry = ChunkHash.byteCount + 16
        guard bytes.count >= head, bytes.starts(with: tag.utf8), (bytes.count - head) % entry == 0 else {
            throw VaultError(
                .corrupt,
                "\(objects.location)/\(Marks.key) is damaged; remove it (the next collections mark again) and run gc again"
            )
        }
        var marks = Marks(listedAt: TimeInterval(Int64(bitPattern: word(bytes, at: tag.utf8.count))))
        for at in stride(from: head, to: bytes.count, by: entry) {
            let id = ChunkHash(bytes: bytes[at..<(at + ChunkHash.byteCount)])
            marks.chunks[id] = Mark(
                at: TimeInterval(Int64(bitPattern: word(bytes, at: at + ChunkHash.byteCount))),
                size: Int64(bitPattern: word(bytes, at: at + ChunkHash.byteCount + 8)))
        }
        return marks
    }

    func save(_ objects: any ObjectStore) throws {
        var bytes = Array(Self.tag.utf8)
        bytes.reserveCapacity(bytes.count + 8 + chunks.count * (ChunkHash.byteCount + 16))
        Self.append(UInt64(bitPattern: Int64(listedAt)), to: &bytes)
        for (id, mark) in chunks {
            bytes += id.bytes
            Self.append(UInt64(bitPattern: Int64(mark.at)), to: &bytes)
            Self.append(UInt64(bitPattern: mark.size), to: &bytes)
        }
        try objects.put(Marks.key, bytes, durable: true)
    }

    private static func word(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        bytes[offset..<(offset + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }

    private static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }
}
