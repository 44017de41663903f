import VaultCore

/// One partition of a disk, as its MBR or GPT describes it.
public struct Partition: Sendable, Equatable, Codable {
    /// Linux's numbering: MBR primaries 1-4 and logicals from 5; GPT entries by position.
    public var number: Int
    public var offset: Int64
    public var size: Int64
    /// The MBR type byte (`0x83`) or the GPT type GUID.
    public var type: String
    /// The GPT partition name, when it has one.
    public var name: String?
}

/// The partition table of a disk: MBR (primary and logical partitions) or GPT.
///
/// Parsed here rather than by libblkid or libfdisk, which want a file descriptor: a point's
/// disk is bytes rebuilt from the chunk store inside the daemon. Every field is bounded by
/// the disk's size, and `DecoderFuzzTests` feeds it damaged tables.
public struct PartitionTable: Sendable, Equatable {
    public enum Scheme: String, Sendable, Codable { case mbr, gpt }

    public var scheme: Scheme
    public var partitions: [Partition]

    static let sector: Int64 = 512
    /// More than any real disk has: bounds the work a damaged table can ask for.
    static let maxGPTEntries = 1024
    static let maxLogical = 128

    /// The disk's table, or nil when it has none. Throws `.corrupt` for a table that says it
    /// is one but cannot be read (a GPT with bad checksums and no good backup).
    public static func read(_ disk: any ByteSource) throws -> PartitionTable? {
        guard disk.size >= 2 * sector else { return nil }
        let mbr = try disk.bytes(at: 0, count: Int(sector))
        guard mbr[510] == 0x55, mbr[511] == 0xAA else { return nil }
        let entries = (0..<4).map { MBREntry(mbr, at: 446 + 16 * $0) }
        if entries.contains(where: { $0.type == 0xEE }) {
            return PartitionTable(scheme: .gpt, partitions: try readGPT(disk))
        }
        // A boot sector without partitions (a filesystem's own, or an empty disk) is no table.
        guard entries.contains(where: { $0.type != 0 && $0.sectors != 0 }),
            entries.allSatisfy({ $0.status == 0 || $0.status == 0x80 })
        else { return nil }
        var partitions: [Partition] = []
        var followedExtended = false
        for (index, entry) in entries.enumerated() where entry.type != 0 && entry.sectors != 0 {
            guard let span = entry.span(base: 0, within: disk.size) else { continue }
            if entry.isExtended {
                // Only one extended partition counts, as in Linux: logicals number from 5.
                guard !followedExtended else { continue }
                followedExtended = true
                partitions += try readLogical(disk, extended: span)
            } else {
                partitions.append(
                    Partition(number: index + 1, offset: span.offset, size: span.size, type: entry.typeName))
            }
        }
        return PartitionTable(scheme: .mbr, partitions: partitions.sorted { $0.number < $1.number })
    }

    /// Follows the chain of extended boot records; each holds one logical partition (relative
    /// to itself) and a link to the next (relative to the extended partition).
    private static func readLogical(_ disk: any ByteSource, extended: (offset: Int64, size: Int64)) throws
        -> [Partition]
    {
        var partitions: [Partition] = []
        var seen: Set<Int64> = []
        var ebr = extended.offset
        var records = 0
        while records < maxLogical, seen.insert(ebr).inserted, ebr + sector <= extended.offset + extended.size {
            records += 1
            let record = try disk.bytes(at: ebr, count: Int(sector))
            guard record[510] == 0x55, record[511] == 0xAA else { break }
            let logical = MBREntry(record, at: 446)
            let next = MBREntry(record, at: 462)
            if logical.type != 0, logical.sectors != 0, let span = logical.span(base: ebr, within: disk.size),
                span.offset >= extended.offset, span.offset + span.size <= extended.offset + extended.size
            {
                partitions.append(
                    Partition(
                        number: 5 + partitions.count, offset: span.offset, size: span.size, type: logical.typeName))
            }
            guard next.isExtended, next.sectors != 0 else { break }
            ebr = extended.offset + Int64(next.start) * sector
        }
        return partitions
    }

    private static func readGPT(_ disk: any ByteSource) throws -> [Partition] {
        let lastLBA = disk.size / sector - 1
        if let primary = try? gpt(disk, headerLBA: 1) { return primary }
        if let backup = try? gpt(disk, headerLBA: lastLBA) { return backup }
        throw VaultError(.corrupt, "the GPT and its backup are both damaged")
    }

    private static func gpt(_ disk: any ByteSource, headerLBA: Int64) throws -> [Partition] {
        let header = try disk.bytes(at: headerLBA * sector, count: Int(sector))
        guard Array(header[0..<8]) == Array("EFI PART".utf8) else { throw VaultError(.corrupt, "no GPT header") }
        let headerSize = Int(le32(header, 12))
        guard headerSize >= 92, headerSize <= Int(sector) else { throw VaultError(.corrupt, "bad GPT header size") }
        var checked = Array(header[0..<headerSize])
        checked[16..<20] = [0, 0, 0, 0]
        guard CRC32.checksum(checked) == le32(header, 16) else { throw VaultError(.corrupt, "bad GPT header checksum") }
        let entriesLBA = Int64(bitPattern: le64(header, 72))
        let count = Int(le32(header, 80))
        let entrySize = Int(le32(header, 84))
        guard count <= maxGPTEntries, entrySize >= 128, entrySize <= 4096, entrySize % 8 == 0,
            entriesLBA > 0, entriesLBA < disk.size / sector
        else { throw VaultError(.corrupt, "bad GPT entry array") }
        let table = try disk.bytes(at: entriesLBA * sector, count: count * entrySize)
        guard CRC32.checksum(table) == le32(header, 88) else { throw VaultError(.corrupt, "bad GPT entry checksum") }
        var partitions: [Partition] = []
        for index in 0..<count {
            let base = index * entrySize
            let typeBytes = Array(table[base..<base + 16])
            guard typeBytes.contains(where: { $0 != 0 }) else { continue }
            let first = le64(table, base + 32)
            let last = le64(table, base + 40)
            guard first <= last, last < UInt64(disk.size / sector) else { continue }
            let nameUnits = stride(from: base + 56, to: base + 128, by: 2).map {
                UInt16(table[$0]) | UInt16(table[$0 + 1]) << 8
            }
            let name = String(decoding: nameUnits.prefix { $0 != 0 }, as: UTF16.self)
            partitions.append(
                Partition(
                    number: index + 1, offset: Int64(first) * sector,
                    size: Int64(last - first + 1) * sector, type: guid(typeBytes),
                    name: name.isEmpty ? nil : name))
        }
        return partitions
    }

    /// A GUID as text: the first three fields are little-endian.
    static func guid(_ b: [UInt8]) -> String {
        let order = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15]
        return order.map { $0 < 0 ? "-" : String(b[$0], radix: 16).leftPadded(2) }.joined().uppercased()
    }
}

/// One 16-byte partition entry of an MBR or an extended boot record.
private struct MBREntry {
    var status: UInt8, type: UInt8, start: UInt32, sectors: UInt32

    init(_ sector: [UInt8], at base: Int) {
        status = sector[base]
        type = sector[base + 4]
        start = le32(sector, base + 8)
        sectors = le32(sector, base + 12)
    }

    var isExtended: Bool { type == 0x05 || type == 0x0F || type == 0x85 }
    var typeName: String { "0x" + String(type, radix: 16).leftPadded(2) }

    /// Byte offset and size, relative to `base`, when the span lies on the disk.
    func span(base: Int64, within size: Int64) -> (offset: Int64, size: Int64)? {
        let offset = base + Int64(start) * PartitionTable.sector
        let length = Int64(sectors) * PartitionTable.sector
        guard start != 0, offset < size, length <= size - offset else { return nil }
        return (offset, length)
    }
}

func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
    UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
}

func le64(_ b: [UInt8], _ at: Int) -> UInt64 { UInt64(le32(b, at)) | UInt64(le32(b, at + 4)) << 32 }

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// CRC-32 (IEEE, as GPT uses it).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        (0..<8).reduce(UInt32(n)) { c, _ in c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        ~bytes.reduce(UInt32.max) { table[Int(($0 ^ UInt32($1)) & 0xFF)] ^ ($0 >> 8) }
    }
}
