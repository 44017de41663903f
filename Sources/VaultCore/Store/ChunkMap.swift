import Crypto

/// The chunk map of one disk in one point. A full map has an entry for every chunk position;
/// an incremental map only for the positions that differ from the parent point.
///
/// File layout (little-endian):
///
///     0  "VFSMAP01"   magic
///     8  UInt32       chunk size
///     12 UInt8        kind: 0 full, 1 incremental
///     13 3 bytes      reserved
///     16 UInt64       disk size in bytes
///     24 UInt64       entry count
///     32 entries      UInt64 position, UInt8 flag (0 zero, 1 data), 32-byte hash
///     .. 32 bytes     SHA-256 of everything before it
public struct ChunkMap: Equatable, Sendable {
    public enum Kind: UInt8, Sendable { case full = 0, incremental = 1 }

    public struct Entry: Equatable, Sendable {
        public var position: Int
        public var ref: ChunkRef
    }

    public var kind: Kind
    public var chunkSize: Int
    public var diskSize: Int64
    public var entries: [Entry]

    static let magic: [UInt8] = Array("VFSMAP01".utf8)
    static let entrySize = 41

    /// Number of chunk positions a disk of `size` bytes has.
    public static func positions(diskSize: Int64, chunkSize: Int) -> Int {
        Int((diskSize + Int64(chunkSize) - 1) / Int64(chunkSize))
    }

    public func encoded() -> [UInt8] {
        var out = Self.magic
        out.reserveCapacity(64 + entries.count * Self.entrySize)
        out += ChunkFile.littleEndian(UInt32(chunkSize))
        out += [kind.rawValue, 0, 0, 0]
        out += ChunkFile.littleEndian(UInt64(diskSize))
        out += ChunkFile.littleEndian(UInt64(entries.count))
        let zeroHash = [UInt8](repeating: 0, count: ChunkHash.byteCount)
        for entry in entries {
            out += ChunkFile.littleEndian(UInt64(entry.position))
            switch entry.ref {
            case .zero:
                out.append(0)
                out += zeroHash
            case .data(let hash):
                out.append(1)
                out += hash.bytes
            }
        }
        out += Array(SHA256.hash(data: out))
        return out
    }

    /// The largest disk a map may describe (1 PiB): bounds every size read from a map.
    static let maxDiskSize: Int64 = 1 << 50
    /// The largest map file: one entry per 64 KiB of the largest disk would be far past this,
    /// so maps of such disks are refused as damaged rather than read into memory.
    static let maxFileSize = 2 << 30

    /// Decodes a map, checking every field against what a repository allows before it is
    /// used: a damaged map is a `.corrupt` error, never a trap or a huge allocation.
    public static func decode(_ bytes: [UInt8]) throws -> ChunkMap {
        func bad(_ why: String) -> VaultError { VaultError(.corrupt, "chunk map is damaged: \(why)") }
        guard bytes.count >= 64, Array(bytes[0..<8]) == magic else { throw bad("bad header") }
        let body = bytes[0..<(bytes.count - 32)]
        guard Array(SHA256.hash(data: body)) == Array(bytes[(bytes.count - 32)...]) else {
            throw bad("checksum mismatch")
        }
        return try bytes.withUnsafeBytes { raw in
            func u64(_ at: Int) -> UInt64 { raw.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian }
            let chunkSize = Int(raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
            guard chunkSize >= 64 << 10, chunkSize <= ChunkFile.maxPlainLength, chunkSize & (chunkSize - 1) == 0 else {
                throw bad("chunk size \(chunkSize) is not a power of two from 64K to 4M")
            }
            guard let kind = Kind(rawValue: raw[12]) else { throw bad("unknown kind") }
            guard u64(16) <= UInt64(maxDiskSize) else { throw bad("disk size \(u64(16)) is past 1 PiB") }
            let diskSize = Int64(u64(16))
            let positions = Self.positions(diskSize: diskSize, chunkSize: chunkSize)
            guard u64(24) <= UInt64(positions), Int(u64(24)) * entrySize == bytes.count - 64 else {
                throw bad("entry count mismatch")
            }
            let count = Int(u64(24))
            var entries: [Entry] = []
            entries.reserveCapacity(count)
            for i in 0..<count {
                let at = 32 + i * entrySize
                guard u64(at) < UInt64(positions) else { throw bad("position \(u64(at)) past the disk's end") }
                let ref: ChunkRef
                switch raw[at + 8] {
                case 0: ref = .zero
                case 1: ref = .data(ChunkHash(bytes: raw[(at + 9)..<(at + 41)]))
                default: throw bad("entry \(i) has an unknown flag \(raw[at + 8])")
                }
                entries.append(Entry(position: Int(u64(at)), ref: ref))
            }
            return ChunkMap(kind: kind, chunkSize: chunkSize, diskSize: diskSize, entries: entries)
        }
    }
}

/// Chunk maps: objects `maps/<point id>/<disk>.map`.
public struct MapStore: Sendable {
    let objects: any ObjectStore
    let sealer: Sealer?

    static let prefix = "maps/"
    func key(_ point: String, _ disk: String) -> String { "\(Self.prefix)\(point)/\(disk).map" }

    /// Written without waiting for the disk: the backup flushes the store once before its
    /// point is committed.
    func write(_ map: ChunkMap, point: String, disk: String) throws {
        try objects.put(
            key(point, disk), sealer.sealFile(map.encoded(), context: "map \(point)/\(disk)"), durable: false)
    }

    public func read(point: String, disk: String) throws -> ChunkMap {
        let name = "\(objects.location)/\(key(point, disk))"
        do {
            guard let stored = try objects.get(key(point, disk), limit: ChunkMap.maxFileSize) else {
                throw VaultError(.corrupt, "chunk map \(name) is missing")
            }
            return try ChunkMap.decode(
                sealer.openFile(stored, context: "map \(point)/\(disk)", what: "chunk map \(name)"))
        } catch let error as VaultError where error.message.hasPrefix("chunk map \(name)") {
            throw error
        } catch let error as VaultError {
            throw VaultError(error.code, "\(name): \(error.message)")
        }
    }

    /// The disks a point has maps for.
    func disks(of point: String) throws -> [String] {
        try objects.list(prefix: "\(Self.prefix)\(point)/").compactMap { object in
            object.key.hasSuffix(".map")
                ? String(object.key.dropFirst(Self.prefix.count + point.count + 1).dropLast(4)) : nil
        }.sorted()
    }

    func remove(point: String) throws {
        for object in try objects.list(prefix: "\(Self.prefix)\(point)/") { try objects.delete(object.key) }
    }

    /// Every point that has maps.
    func points() throws -> Set<String> {
        Set(
            try objects.list(prefix: Self.prefix).compactMap { object in
                let parts = object.key.split(separator: "/")
                return parts.count == 3 ? String(parts[1]) : nil
            })
    }
}
