import Crypto
import Foundation
import Glibc

/// A keyed 16-byte digest of one chunk's bytes, about ten times cheaper than its SHA-256:
/// AES-128-GCM's tag with no plaintext and the chunk as associated data (GMAC), 20 GB/s on a
/// core of the bench machine against SHA-256's 1.8 GB/s. All zeros stands for "none".
///
/// One key and one nonce serve a disk's whole chain of backups, so that one tag per chunk both
/// answers "unchanged?" and is kept for the next backup. Two tags of known chunks would give
/// away GHASH's key: the tags are secret like the key, and never leave this host.
struct Fingerprint: Equatable {
    let high: UInt64
    let low: UInt64

    static let none = Fingerprint(high: 0, low: 0)
    static let byteCount = 16
    private static let nonce = try! AES.GCM.Nonce(data: [UInt8](repeating: 0, count: 12))

    init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    init(of chunk: UnsafeRawBufferPointer, key: SymmetricKey) {
        // Sealing fails only for a key or nonce of a wrong size; both are fixed here.
        let tag = try! AES.GCM.seal(EmptyCollection<UInt8>(), using: key, nonce: Self.nonce, authenticating: chunk).tag
        (high, low) = tag.withUnsafeBytes {
            (
                $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            )
        }
    }
}

/// What one backup of one disk read, position by position, for telling which chunks the next
/// incremental finds unchanged without hashing them.
///
/// An incremental must tell which chunks changed since its parent point. Hashing every chunk
/// with SHA-256 bounds it at 1.8 GB/s per core; so each backup also keeps each data chunk's
/// `Fingerprint` under a random key kept with them. The next incremental fingerprints what it
/// reads with the same key: where a position's fingerprint equals the parent's, the chunk is
/// the parent's and keeps its id; only the others are hashed, compressed and stored.
///
/// Why that is safe: GHASH is a universal hash, so two different chunks of at most 2^18
/// 16-byte blocks (4 MiB) have the same tag with a chance of at most 2^-110 under a key their
/// writer does not know; and whoever writes a disk (a VM's guest, say) sees neither the key nor
/// any tag. (Borg takes a file as unchanged from its ctime, size and inode number.)
struct Fingerprints {
    /// The point whose backup read these bytes, and the disk.
    let pointId: String
    let disk: String
    let chunkSize: Int
    let key: SymmetricKey
    /// One per chunk position; `.none` where the backup read no data.
    var prints: [Fingerprint]

    /// Whether `print` is what the backup read at `position`.
    func matches(_ print: Fingerprint, at position: Int) -> Bool {
        print != .none && position < prints.count && prints[position] == print
    }

    static let magic: [UInt8] = Array("VFSFPR02".utf8)
    /// The largest file: 16 bytes for each position of the largest disk a chunk map may
    /// describe, and the header.
    static let maxFileSize = ChunkMap.maxFileSize / ChunkMap.entrySize * Fingerprint.byteCount + 512

    /// File layout (little-endian), sealed whole in an encrypted repository:
    ///
    ///     0  "VFSFPR02"   magic
    ///     8  36 bytes     point id, zero-padded
    ///     44 UInt32       chunk size
    ///     48 16 bytes     key
    ///     64 UInt64       position count
    ///     72 UInt16       length of the disk's name, then the name
    ///     .. 16 bytes     per position
    ///     .. 32 bytes     SHA-256 of everything before it
    func encoded() -> [UInt8] {
        let name = Array(disk.utf8.prefix(Int(UInt16.max)))
        var out = Self.magic
        out.reserveCapacity(106 + name.count + prints.count * Fingerprint.byteCount)
        let id = Array(pointId.utf8.prefix(36))
        out += id + [UInt8](repeating: 0, count: 36 - id.count)
        out += ChunkFile.littleEndian(UInt32(chunkSize))
        key.withUnsafeBytes { out += $0 }
        out += ChunkFile.littleEndian(UInt64(prints.count))
        out += ChunkFile.littleEndian(UInt16(name.count)) + name
        for print in prints {
            withUnsafeBytes(of: print.high.littleEndian) { out.append(contentsOf: $0) }
            withUnsafeBytes(of: print.low.littleEndian) { out.append(contentsOf: $0) }
        }
        out += Array(SHA256.hash(data: out))
        return out
    }

    /// The fingerprints in `bytes`, or nil when they are damaged or not of this shape.
    static func decode(_ bytes: [UInt8]) -> Fingerprints? {
        guard bytes.count >= 106, bytes.count <= maxFileSize, Array(bytes[0..<8]) == magic,
            Array(SHA256.hash(data: bytes[0..<(bytes.count - 32)])) == Array(bytes[(bytes.count - 32)...])
        else { return nil }
        return bytes.withUnsafeBytes { raw -> Fingerprints? in
            let nameLength = Int(raw.loadUnaligned(fromByteOffset: 72, as: UInt16.self).littleEndian)
            let start = 74 + nameLength
            let body = bytes.count - 32 - start
            let count = raw.loadUnaligned(fromByteOffset: 64, as: UInt64.self).littleEndian
            guard body >= 0, body % Fingerprint.byteCount == 0, count == UInt64(body / Fingerprint.byteCount) else {
                return nil
            }
            let prints = (0..<Int(count)).map { i in
                Fingerprint(
                    high: raw.loadUnaligned(fromByteOffset: start + 16 * i, as: UInt64.self).littleEndian,
                    low: raw.loadUnaligned(fromByteOffset: start + 16 * i + 8, as: UInt64.self).littleEndian)
            }
            return Fingerprints(
                pointId: String(decoding: bytes[8..<44].prefix { $0 != 0 }, as: UTF8.self),
                disk: String(decoding: bytes[74..<start], as: UTF8.self),
                chunkSize: Int(raw.loadUnaligned(fromByteOffset: 44, as: UInt32.self).littleEndian),
                key: SymmetricKey(data: bytes[48..<64]), prints: prints)
        }
    }
}

/// Fingerprints kept on this host: `fingerprints/server-ID/POINT/DISK` in the repository's
/// folder, or in the state folder of a repository in an object store. They are not part of the
/// repository's format: nothing reads them but the next backup of the same server, and a
/// missing, damaged or stale file only means that backup hashes every chunk. Owner-only
/// whatever the repository shares, and sealed with the data key in an encrypted repository.
struct FingerprintStore {
    let directory: String
    let sealer: Sealer?
    /// How many points of a server keep their fingerprints (`parentsToKeep`).
    static let keptPoints = 4

    private func folder(server: Int64) -> String { "\(directory)/server-\(server)" }
    private func path(server: Int64, point: String, disk: String) -> String {
        "\(folder(server: server))/\(point)/\(disk)"
    }
    private func context(point: String, disk: String) -> String { "fingerprints/\(point)/\(disk)" }

    /// The fingerprints the backup of `point` kept for `disk`, or nil.
    func load(server: Int64, point: String, disk: String, chunkSize: Int) -> Fingerprints? {
        let file = path(server: server, point: point, disk: disk)
        var st = stat()
        guard lstat(file, &st) == 0, st.st_mode & S_IFMT == S_IFREG,
            var bytes = try? Posix.readFile(file, limit: Fingerprints.maxFileSize + Sealer.overhead + 4)
        else { return nil }
        if let sealer {
            guard
                let plain = try? sealer.openFile(
                    bytes, context: context(point: point, disk: disk), what: "fingerprints")
            else { return nil }
            bytes = plain
        }
        guard let prints = Fingerprints.decode(bytes), prints.pointId == point, prints.disk == disk,
            prints.chunkSize == chunkSize
        else { return nil }
        return prints
    }

    /// Keeps `prints` under the point and disk they name. A folder on the way that is not
    /// a real folder of this user (a symbolic link, say) is refused.
    func save(_ prints: Fingerprints, server: Int64) throws {
        for folder in [directory, folder(server: server), "\(folder(server: server))/\(prints.pointId)"] {
            try Posix.makeDirectory(folder, mode: 0o700)
            var st = stat()
            guard lstat(folder, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == geteuid() else {
                throw VaultError(.io, "\(folder) is not a folder of this user")
            }
        }
        var bytes = prints.encoded()
        if let sealer { bytes = sealer.sealFile(bytes, context: context(point: prints.pointId, disk: prints.disk)) }
        // A torn file after a crash fails its checksum and is not used: no sync needed.
        try Posix.writeFileAtomically(
            path(server: server, point: prints.pointId, disk: prints.disk), bytes, mode: 0o600, sync: false)
    }

    /// The points of a server whose fingerprints can still serve a backup: the newest active
    /// point of each chain (an incremental's parent is always the newest of its chain),
    /// policy chains first, then the newest; at most `keptPoints`.
    static func parentsToKeep(_ points: [Point]) -> Set<String> {
        var tips: [String: Point] = [:]
        for point in points where point.status == .active && point.deletion == .none {
            if let tip = tips[point.chainId], tip.startedAt > point.startedAt { continue }
            tips[point.chainId] = point
        }
        let ordered = tips.values.sorted { a, b in
            a.schedule == b.schedule ? a.startedAt > b.startedAt : a.schedule == .policy
        }
        return Set(ordered.prefix(keptPoints).map(\.id))
    }

    /// Removes the server's fingerprints but those of the `kept` points.
    func prune(server: Int64, keeping kept: Set<String>) {
        let folder = folder(server: server)
        for name in Posix.listDirectory(folder) where !kept.contains(name) { Posix.removeTree("\(folder)/\(name)") }
    }

    /// Removes every fingerprint of a server (when it leaves the repository).
    func remove(server: Int64) { Posix.removeTree(folder(server: server)) }
}

extension Repository {
    var fingerprints: FingerprintStore { FingerprintStore(directory: "\(root)/fingerprints", sealer: chunks.sealer) }
}
