import Foundation
import Glibc
import TestSupport
import XCTest

@testable import VaultCore

/// Proves that the chunk, map and manifest decoders survive damage. Real files from a real
/// backup are mutated by a seeded fuzzer and read back in place: no mutation may trap, cost
/// a huge allocation, write outside the caller's buffer, or be reported as success with
/// bytes other than the ones that were stored. Whole-chunk loads (checked against the
/// chunk's address) must hold to that whatever the damage; frame reads must too, unless the
/// damage forged the frame index's digest, which only the address can catch.
///
/// Every iteration draws its mutations from its own generator, seeded from the run's seed and
/// the iteration number, so a failure (or a trap, through `Breadcrumb`) names both and the
/// iteration replays alone. Knobs, all optional:
/// - `VAULTFS_FUZZ_ITERATIONS`: total iterations of the three tests (default 10,000), split
///   4:3:3 between chunks, maps and manifests;
/// - `VAULTFS_FUZZ_SEED`: the run's seed, decimal or 0x-hex (default fixed, so runs repeat);
/// - `VAULTFS_FUZZ_ONLY`: run only this iteration, to replay a failure.
final class DecoderFuzzTests: XCTestCase {
    /// The test's repositories, kept until it ends: their folders go with them.
    private var fixtures: [Fixture] = []

    private func makeFixture(chunkSize: Int = 64 << 10) throws -> Fixture {
        let fixture = try Fixture(chunkSize: chunkSize)
        fixtures.append(fixture)
        return fixture
    }

    override func setUp() {
        FuzzCase.failures = 0
        Breadcrumb.install()
    }

    override func tearDown() {
        fixtures = []
        Breadcrumb.remove()
        if FuzzCase.failures > FuzzCase.failureLimit {
            XCTFail("\(FuzzCase.failures - FuzzCase.failureLimit) more failed checks not shown")
        }
    }

    func testMutatedChunksNeverDecodeToWrongBytes() throws {
        // 64 KiB chunks are one frame each; 256 KiB chunks have four behind a frame index.
        // Each backed up as soon as it is made: the two fixtures' servers share a name on
        // this host, which reads the disk of the one set up last.
        var fixtures: [Fixture] = []
        var corpus: [StoredChunk] = []
        for chunkSize in [64 << 10, 256 << 10] {
            let fixture = try makeFixture(chunkSize: chunkSize)
            fixtures.append(fixture)
            corpus += try StoredChunk.all(of: fixture.repository, point: fixture.backup("one"))
        }
        for fixture in fixtures {
            XCTAssertEqual(
                Set(corpus.filter { $0.store === fixture.repository.chunks }.map(\.hash)),
                Set(try fixture.repository.chunks.allChunks().map(\.hash)), "the point uses every stored chunk")
        }
        XCTAssert(
            corpus.contains { $0.file.count < $0.plain.count } && corpus.contains { $0.file.count > $0.plain.count },
            "the corpus has compressed and incompressible chunks")

        let memory = peakResidentBytes()
        var accepted = 0
        for iteration in FuzzRun.iterations(tenths: 4) {
            var random = FuzzRun.random(iteration)
            let chunk = random.pick(corpus)
            var damage = Damage(chunk.file)
            for _ in 0...random.below(8) { random.damageChunk(&damage, plainLength: chunk.plain.count, corpus: corpus) }
            let test = FuzzCase("\(chunk)", iteration, damage, original: chunk.file, path: chunk.path)
            try test.write(mode: 0o400)

            let loaded = test.load(chunk)
            let reason = chunk.store.verify(chunk.hash)
            let count = ChunkFile.frameCount(chunk.plain.count)
            let first = random.below(count)
            let frames = first..<(first + 1 + random.below(count - first))
            let read = Result { try chunk.store.loadFrames(chunk.hash, length: chunk.plain.count, frames: frames) }
            try test.restore(mode: 0o400)

            if let loaded {
                accepted += 1
                test.check(loaded == chunk.plain, "load reported success with bytes other than the stored ones")
            }
            test.check(
                (reason == nil) == (loaded != nil),
                "verify says \(reason ?? "whole") but load \(loaded == nil ? "failed" : "succeeded")")
            test.checkCorrupt(read)
            // A frame read checks frames, not the whole chunk: only a forged index may fool it.
            for (index, bytes) in (try? read.get()) ?? [] where !damage.forged {
                test.check(
                    bytes[...] == chunk.frame(index),
                    "loadFrames reported success with bytes other than the stored ones in frame \(index)")
            }
        }
        print("chunk fuzz: \(accepted) of \(FuzzRun.iterations(tenths: 4).count) damaged chunks still read back whole")
        XCTAssertLessThan(
            peakResidentBytes() - memory, FuzzRun.memoryAllowance, "decoding damaged chunks cost a huge allocation")
    }

    /// Regression, found by the chunk fuzzer in the first framed format (no index digest, no
    /// per-frame check): a frame stripped of its zstd checksum (flag cleared, last four bytes
    /// dropped) and then damaged read back as success through a frame read (`loadFrames`, what
    /// every mount read goes through). It must be refused whatever became of the index, even
    /// one rewritten to match under a fresh digest.
    func testFrameReadRefusesAFrameWithoutItsChecksum() throws {
        let (chunk, _) = try twoIncompressibleChunks()
        var file = try XCTUnwrap(ChunkFrames(chunk.file))
        XCTAssertNotNil(
            file.frames[0].withUnsafeBytes { ChunkFile.frameCheck($0) }, "frames are written with their checksum")
        file.frames[0][4] &= ~0x04
        file.frames[0].removeLast(4)
        file.frames[0][file.frames[0].count / 2] ^= 0x01
        for index in [ChunkFrames.Index.kept, .rewritten, .resealed] {
            try FuzzCase.replace(chunk.path, with: file.file(index), sparseLength: nil, mode: 0o400)
            XCTAssertThrowsError(
                try chunk.store.loadFrames(chunk.hash, length: chunk.plain.count, frames: 0..<1), "index \(index)")
            XCTAssertNotNil(chunk.store.verify(chunk.hash), "index \(index)")
        }
    }

    /// Regression, found by the chunk fuzzer in the first framed format: the frames of another
    /// chunk of the same length, behind this chunk's header and index, read back as this
    /// chunk's bytes through a frame read, since a zstd checksum covers a frame's content only.
    func testFrameReadRefusesTheFramesOfAnotherChunk() throws {
        let (chunk, other) = try twoIncompressibleChunks()
        var file = try XCTUnwrap(ChunkFrames(chunk.file))
        file.frames = try XCTUnwrap(ChunkFrames(other.file)).frames
        for index in [ChunkFrames.Index.kept, .rewritten] {
            try FuzzCase.replace(chunk.path, with: file.file(index), sparseLength: nil, mode: 0o400)
            XCTAssertThrowsError(
                try chunk.store.loadFrames(chunk.hash, length: chunk.plain.count, frames: 0..<1), "index \(index)")
            XCTAssertNotNil(chunk.store.verify(chunk.hash), "index \(index)")
        }
    }

    /// Two full chunks of the disk's random file (64 KiB, one frame each).
    private func twoIncompressibleChunks() throws -> (StoredChunk, StoredChunk) {
        let fixture = try makeFixture()
        let chunks = try StoredChunk.all(of: fixture.repository, point: fixture.backup("one"))
            .filter { $0.plain.count == 64 << 10 && $0.file.count > $0.plain.count }
        guard chunks.count >= 2 else { throw TestError.failed("the backup has fewer than two incompressible chunks") }
        return (chunks[0], chunks[1])
    }

    func testMutatedMapsAreRefusedOrHarmless() throws {
        let fixture = try makeFixture()
        let (full, incremental) = try twoPoints(fixture)
        let repository = fixture.repository
        let recorded = try XCTUnwrap(repository.catalog.pointDisks(incremental.id).first { $0.disk == "root" }).size
        let positions = ChunkMap.positions(diskSize: recorded, chunkSize: repository.config.chunkSize)
        let maps = try [full.id, incremental.id].map { id in
            let path = "\(repository.root)/" + repository.maps.key(id, "root")
            return (point: id, path: path, bytes: try readBytes(path))
        }
        XCTAssertEqual(try repository.maps.read(point: incremental.id, disk: "root").kind, .incremental)
        XCTAssertEqual(try repository.flatten(point: incremental.id, disk: "root").refs.count, positions)

        let memory = peakResidentBytes()
        var decoded = 0
        var flattened = 0
        for iteration in FuzzRun.iterations(tenths: 3) {
            var random = FuzzRun.random(iteration)
            let resealed = iteration % 2 == 1
            let map = maps[random.below(maps.count)]
            var damage = Damage(map.bytes)
            for _ in 0...random.below(8) { random.damageMap(&damage, diskSize: recorded, positions: positions) }
            if resealed { damage.resealMap() }
            let test = FuzzCase(
                "\(resealed ? "resealed" : "plain") map of \(map.point == full.id ? "the full" : "the incremental") point",
                iteration, damage, original: map.bytes, path: map.path)
            try test.write(mode: 0o600)

            let read = Result { try repository.maps.read(point: map.point, disk: "root") }
            let image = Result { try repository.flatten(point: incremental.id, disk: "root") }
            try test.restore(mode: 0o600)
            test.checkCorrupt(read)
            test.checkCorrupt(image)
            if case .success = read { decoded += 1 }
            if !resealed && damage.changes(map.bytes) {
                test.check((try? read.get()) == nil, "a map whose checksum no longer matches was read")
                test.check(
                    (try? image.get()) == nil, "a chain with a map whose checksum no longer matches was flattened")
            }
            if case .success(let image) = image {
                flattened += 1
                test.check(
                    image.size == recorded && image.refs.count == positions,
                    "flattened to \(image.size) bytes in \(image.refs.count) positions; the catalog recorded \(recorded) bytes"
                )
            }
        }
        print("map fuzz: \(decoded) damaged maps decoded, \(flattened) chains flattened")
        if FuzzRun.iterations(tenths: 3).count >= 1000 {
            XCTAssertGreaterThan(flattened, 0, "resealed maps reach flatten")
        }
        XCTAssertLessThan(
            peakResidentBytes() - memory, FuzzRun.memoryAllowance, "decoding damaged maps cost a huge allocation")
    }

    func testMutatedManifestsAreRefusedOrHarmless() throws {
        let fixture = try makeFixture()
        let points = try twoPoints(fixture)
        let manifests = fixture.repository.manifests
        let files = try [points.0.id, points.1.id].map { id in
            let path = "\(fixture.repository.root)/manifests/points/\(id).json"
            return (id: id, path: path, bytes: try readBytes(path))
        }
        XCTAssertNotNil(try manifests.point(points.1.id))

        let memory = peakResidentBytes()
        var accepted = 0
        for iteration in FuzzRun.iterations(tenths: 3) {
            var random = FuzzRun.random(iteration)
            let (id, path, original) = files[random.below(files.count)]
            var damage = Damage(original)
            for _ in 0...random.below(8) { random.damageManifest(&damage, other: files.map(\.bytes)) }
            let test = FuzzCase("manifest of point \(id)", iteration, damage, original: original, path: path)
            try test.write(mode: 0o600)

            let result = Result { try manifests.point(id) }
            try test.restore(mode: 0o600)
            test.checkCorrupt(result)
            if case .success(let manifest) = result {
                accepted += 1
                test.check(manifest != nil, "a damaged manifest was read as missing")
                guard let manifest else { continue }
                test.check(manifest.point.id == id, "the manifest of \(id) was read as point \(manifest.point.id)")
                for disk in manifest.disks {
                    test.check(
                        (0...ChunkMap.maxDiskSize).contains(disk.size),
                        "disk '\(disk.disk)' was read with size \(disk.size)")
                }
            }
        }
        print("manifest fuzz: \(accepted) damaged manifests still passed their check")
        XCTAssertLessThan(
            peakResidentBytes() - memory, FuzzRun.memoryAllowance, "decoding damaged manifests cost a huge allocation")
    }

    /// A vault's and a server's manifests, damaged, taken in as `repair --rebuild-catalog`
    /// does and as a second host of a shared store does: refused with the file's name, or
    /// taken in with values the scheduler, the chain rule and retention use without a trap.
    func testMutatedVaultAndServerManifestsAreRefusedOrHarmlessToARebuildAndAnotherHost() throws {
        let fixture = try makeFixture()
        let repository = fixture.repository
        try repository.setPolicy(
            Policy(startMinute: 90, everyHours: 4, incrementals: 3, keepFulls: 2, since: Date()), vault: "prod")
        _ = try twoPoints(fixture)
        let files = try ["vaults/prod", "servers/\(fixture.server)"].map { name in
            let path = "\(repository.root)/manifests/\(name).json"
            return (name: name, path: path, bytes: try readBytes(path))
        }
        let scratch = Scratch("manifest-fuzz")
        var refused = 0
        var taken = 0
        for iteration in FuzzRun.iterations(tenths: 1) {
            var random = FuzzRun.random(iteration)
            let (name, path, original) = files[random.below(files.count)]
            var damage = Damage(original)
            for _ in 0...random.below(8) { random.damageManifest(&damage, other: files.map(\.bytes)) }
            let test = FuzzCase("manifest \(name)", iteration, damage, original: original, path: path)
            try test.write(mode: 0o600)
            defer { try? test.restore(mode: 0o600) }

            // repair --rebuild-catalog: the damaged file is refused with its name, or taken in.
            let rebuilt = scratch.file("rebuilt-\(iteration).sqlite")
            let rebuild = Result {
                try CatalogRebuild.build(at: rebuilt, from: repository.manifests, modes: .ownerOnly)
            }
            if case .failure(let error) = rebuild {
                refused += 1
                test.check("\(error)".contains(path), "refused without naming the file: \(error)")
            }
            // Another host: what the store holds merged into its catalog, a damaged file left out.
            let other = scratch.file("other-\(iteration).sqlite")
            let catalog = try Catalog.create(at: other, mode: 0o600)
            let found = try repository.manifests.changed(since: [:])
            _ = try catalog.merge(vaults: found.vaults, servers: found.servers, points: found.points)
            var catalogs = [catalog]
            if case .success = rebuild {
                catalogs.append(try Catalog(path: rebuilt, readOnlyReason: nil))
                taken += 1
            }
            for catalog in catalogs {
                for vault in try catalog.vaults() {
                    guard let policy = vault.policy else { continue }
                    let now = Date()
                    _ = policy.latestSlot(atOrBefore: now)
                    test.check(policy.nextSlot(after: now) > now, "no next slot for \(policy)")
                    _ = ChainRule.next(
                        policyPoints: try catalog.policyPoints(vault: vault.id), incrementals: policy.incrementals)
                }
                _ = try catalog.servers().map { try catalog.disks(ofServer: $0.id) }
            }
            for file in [rebuilt, other] { for suffix in ["", "-wal", "-shm"] { unlink(file + suffix) } }
        }
        print("vault and server manifest fuzz: \(refused) refused by the rebuild, \(taken) taken in")
    }

    /// `gc/marks` and `gc/removed/N`, damaged: refused whole (a damaged-marks error, a record
    /// read as missing), or read as exactly as many entries as the bytes hold.
    func testMutatedCollectionRecordsAreRefusedOrHarmless() throws {
        let fixture = try makeFixture()
        let objects = fixture.repository.objects
        let ids = (0..<4).map { i in [UInt8](repeating: UInt8(i), count: 8).withUnsafeBytes { ChunkHash(of: $0) } }
        var marks = Marks()
        marks.listedAt = 1_900_000_000
        for (i, id) in ids.enumerated() {
            marks.chunks[id] = Marks.Mark(at: 1_900_000_000 + Double(i), size: Int64(i) * 1000)
        }
        try marks.save(objects)
        let originals = [
            try XCTUnwrap(objects.get(Marks.key, limit: 1 << 20)), ChunkIdList.encode(ids, tag: RemovalRecords.tag),
        ]
        var refused = 0
        for iteration in FuzzRun.iterations(tenths: 1) {
            var random = FuzzRun.random(iteration)
            let which = random.below(2)
            var damage = Damage(originals[which])
            for _ in 0...random.below(8) { random.damageBytes(&damage, limit: 1 << 20) }
            damage.sparseLength = nil
            let size = damage.bytes.count
            if which == 0 {
                try objects.put(Marks.key, damage.bytes, durable: false)
                do {
                    let read = try Marks.load(objects)
                    XCTAssertEqual(
                        read.chunks.count * (ChunkHash.byteCount + 16) + 16, size,
                        "marks iteration \(iteration): \(damage.steps)")
                } catch let error as VaultError {
                    XCTAssertEqual(error.code, .corrupt, "marks iteration \(iteration): \(error)")
                    refused += 1
                }
            } else {
                try objects.put(RemovalRecords.key(1), damage.bytes, durable: false)
                if let read = try RemovalRecords.read(1, from: objects) {
                    XCTAssertEqual(
                        read.count * ChunkHash.byteCount + 8, size, "record iteration \(iteration): \(damage.steps)")
                } else {
                    refused += 1
                }
            }
        }
        print("collection records fuzz: \(refused) damaged records refused")
    }

    /// A full point, a change to the disk, and an incremental point on top of it.
    private func twoPoints(_ fixture: Fixture) throws -> (Point, Point) {
        let full = try fixture.backup("b1")
        try fixture.disk.write("data/x", pseudoRandomBytes(300 << 10, seed: 7))
        return (full, try fixture.backup("b2", kind: .incremental, parent: full.id))
    }
}

// MARK: - Damage

/// A damaged copy of a file: its bytes, an optional sparse length past them (a file too big
/// to read), and the steps that made it, for the report.
struct Damage {
    var bytes: [UInt8]
    var sparseLength: Int?
    var steps: [String] = []
    /// Whether a step recomputed a digest the damage would otherwise have broken.
    var forged = false

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func changes(_ original: [UInt8]) -> Bool { bytes != original || sparseLength != nil }

    /// Stores `value` little-endian in `width` bytes at `offset`, when the file is that long.
    mutating func set(_ name: String, at offset: Int, width: Int, to value: UInt64) {
        guard offset >= 0, offset + width <= bytes.count else { return steps.append("(\(name) past the end)") }
        for k in 0..<width { bytes[offset + k] = UInt8(truncatingIfNeeded: value >> (8 * k)) }
        steps.append("\(name) at \(offset) = 0x\(String(value, radix: 16))")
    }

    /// Replaces the last 32 bytes with the SHA-256 of the rest, as a map's writer would.
    mutating func resealMap() {
        guard bytes.count >= 32 else { return }
        let body = bytes.dropLast(32)
        let digest = body.withUnsafeBytes { ChunkHash(of: $0).bytes }
        bytes.replaceSubrange((bytes.count - 32)..., with: digest)
        steps.append("reseal")
    }
}

extension FuzzRandom {
    /// Damage that any file can take: bit flips, odd bytes, truncation, extension, a cut, a
    /// size past what the reader accepts.
    mutating func damageBytes(_ damage: inout Damage, limit: Int) {
        let count = damage.bytes.count
        switch below(16) {
        case 0..<5 where count > 0:
            let at = below(count)
            let bit = below(8)
            damage.bytes[at] ^= 1 << bit
            damage.steps.append("flip bit \(bit) of byte \(at)")
        case 5..<9 where count > 0:
            let at = below(count)
            let value = pick([0x00, 0xff, 0x01, 0x7f, 0x80, UInt8(truncatingIfNeeded: next())])
            damage.bytes[at] = value
            damage.steps.append("byte \(at) = 0x\(String(value, radix: 16))")
        case 9...10 where count > 0:
            let length = min(count - 1, pick([0, 1, 31, 32, 47, 48, 49, 63, 64, below(count)]))
            damage.bytes.removeLast(count - length)
            damage.steps.append("truncate to \(length)")
        case 11, 12:
            let extra = bytes(1 + below(pick([8, 64, 4096])))
            damage.bytes += extra
            damage.steps.append("append \(extra.count) random bytes")
        case 13 where count > 0:
            let at = below(count)
            let length = min(count - at, 1 + below(64))
            damage.bytes.removeSubrange(at..<(at + length))
            damage.steps.append("cut \(length) bytes at \(at)")
        case 14 where count > 0:
            let at = below(count)
            let extra = bytes(1 + below(64))
            damage.bytes.insert(contentsOf: extra, at: at)
            damage.steps.append("insert \(extra.count) random bytes at \(at)")
        case 15 where below(4) == 0:
            damage.sparseLength = pick([limit + 1, limit + 1 + below(1 << 20), 1 << 40])
            damage.steps.append("grow sparse to \(damage.sparseLength!) bytes")
        default:
            damage.steps.append("(no-op)")
        }
    }

    /// Chunk damage: byte damage; a header field, the frame count or a frame length set to an
    /// edge value; the header of another chunk; or a frame of another chunk, two frames
    /// swapped, or a frame without its checksum, behind an index kept, rewritten or resealed.
    mutating func damageChunk(_ damage: inout Damage, plainLength: Int, corpus: [StoredChunk]) {
        let size = damage.bytes.count
        func field(_ offset: Int) -> Int {
            offset + 4 > size
                ? 0
                : damage.bytes.withUnsafeBytes {
                    Int($0.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
                }
        }
        let plain = field(8)
        let frames = ChunkFile.frameCount(max(1, plain))
        switch below(16) {
        case 0, 1:
            let offset = pick([8, 12])
            let lengths = [
                0, 1, 47, 48, plainLength - 1, plainLength, plainLength + 1, size, size - 48, size - 47, size - 49,
                plain - 1, plain + 1, ChunkFile.maxPlainLength, ChunkFile.maxPlainLength + 1, 0x7fff_ffff, 0x8000_0000,
                0xffff_ffff,
            ]
            damage.set(
                offset == 8 ? "plain length" : "payload length", at: offset, width: 4,
                to: UInt64(truncatingIfNeeded: pick(lengths)))
        case 2:
            damage.set("header byte", at: pick([4, 5, 6, 7]), width: 1, to: UInt64(pick([0, 1, 2, 3, 0xff])))
        case 3:
            damage.set(
                "frame count", at: 6, width: 2,
                to: UInt64(pick([0, 1, frames - 1, frames + 1, ChunkFile.maxFrames, ChunkFile.maxFrames + 1, 0xffff])))
        case 4:
            let at = ChunkFile.headerSize + ChunkFile.indexEntrySize * below(frames)
            let current = field(at)
            let most = ChunkFile.maxFrameLength
            damage.set(
                "frame length", at: at, width: 4,
                to: UInt64(
                    truncatingIfNeeded: pick([0, 1, current - 1, current + 1, most, most + 1, 0x7fff_ffff, 0xffff_ffff])
                ))
        case 5:
            let other = pick(corpus)
            damage.bytes.replaceSubrange(
                0..<min(size, ChunkFile.headerSize), with: other.file[0..<ChunkFile.headerSize])
            damage.steps.append("header of the \(other)")
        case 6...8:
            guard var file = ChunkFrames(damage.bytes) else { return damage.steps.append("(frames unreadable)") }
            let i = below(file.frames.count)
            let j = below(file.frames.count)
            switch below(3) {
            case 0:
                let other = pick(corpus)
                guard let frame = ChunkFrames(other.file)?.frames.first else {
                    return damage.steps.append("(frames unreadable)")
                }
                file.frames[i] = frame
                damage.steps.append("frame \(i) = frame 0 of the \(other)")
            case 1:
                file.frames.swapAt(i, j)
                damage.steps.append("swap frames \(i) and \(j)")
            default:
                // Frame header descriptor bit 2: the frame ends with a 4-byte checksum of its content.
                guard file.frames[i].count > 9, file.frames[i][4] & 0x04 != 0 else {
                    return damage.steps.append("(no checksum)")
                }
                file.frames[i][4] &= ~0x04
                file.frames[i].removeLast(4)
                damage.steps.append("frame \(i) without its checksum")
            }
            let index = pick([ChunkFrames.Index.kept, .kept, .rewritten, .resealed])
            damage.bytes = file.file(index)
            damage.forged = damage.forged || index == .resealed
            damage.steps.append("index \(index)")
        default:
            damageBytes(&damage, limit: ChunkFile.maxFileSize)
        }
    }

    /// Map damage: byte damage, or a field of the header or of an entry set to an edge value,
    /// or an entry removed or repeated.
    mutating func damageMap(_ damage: inout Damage, diskSize: Int64, positions: Int) {
        let entries = max(0, (damage.bytes.count - 64) / ChunkMap.entrySize)
        let entry = 32 + below(max(1, entries)) * ChunkMap.entrySize
        let size = UInt64(diskSize)
        let chunk: UInt64 = 64 << 10
        let most = UInt64(ChunkMap.maxDiskSize)
        switch below(16) {
        case 0:
            damage.set(
                "chunk size", at: 8, width: 4,
                to: pick([
                    0, 1, 4096, 32 << 10, chunk - 1, chunk, chunk + 1, 128 << 10, 4 << 20, 8 << 20, 1 << 31,
                    0xffff_ffff,
                ]))
        case 1:
            damage.set("kind", at: 12, width: 1, to: pick([0, 1, 2, 0xff]))
        case 2:
            damage.set(
                "disk size", at: 16, width: 8,
                to: pick([
                    0, 1, chunk - 1, chunk, chunk + 1, size - 1, size + 1, size + chunk, size * 2,
                    most - 1, most, most + 1, 1 << 62, 1 << 63, UInt64(Int64.max), .max,
                ]))
        case 3:
            let n = UInt64(entries)
            let p = UInt64(positions)
            damage.set(
                "entry count", at: 24, width: 8,
                to: pick([0, 1, n &- 1, n + 1, p, p + 1, .max / 41, .max / 41 + 1, 1 << 60, 1 << 63, .max]))
        case 4, 5:
            let p = UInt64(positions)
            damage.set(
                "entry position", at: entry, width: 8, to: pick([0, p - 1, p, p + 1, p * 2, 1 << 63, .max, next()]))
        case 6:
            damage.set("entry flag", at: entry + 8, width: 1, to: pick([0, 1, 2, 0xff]))
        case 7 where entries > 0:
            damage.bytes.removeSubrange(entry..<(entry + ChunkMap.entrySize))
            damage.steps.append("remove the entry at \(entry)")
            if below(2) == 0 { damage.set("entry count", at: 24, width: 8, to: UInt64(entries - 1)) }
        case 8 where entries > 0:
            damage.bytes.insert(contentsOf: Array(damage.bytes[entry..<(entry + ChunkMap.entrySize)]), at: entry)
            damage.steps.append("repeat the entry at \(entry)")
            if below(2) == 0 { damage.set("entry count", at: 24, width: 8, to: UInt64(entries + 1)) }
        default:
            damageBytes(&damage, limit: ChunkMap.maxFileSize)
        }
    }

    /// Manifest damage: byte damage, or JSON-aware edits: numbers and strings swapped for edge
    /// values, keys given twice, values nested 10,000 deep, another point's manifest.
    mutating func damageManifest(_ damage: inout Damage, other manifests: [[UInt8]]) {
        let edit = below(12)
        guard edit < 6 else { return damageBytes(&damage, limit: ManifestStore.maxFileSize) }
        let tokens = JSONTokens(damage.bytes)
        switch edit {
        case 0...1 where !tokens.numbers.isEmpty:
            let span = pick(tokens.numbers)
            let value = pick(Self.edgeNumbers)
            damage.bytes.replaceSubrange(span, with: Array(value.utf8))
            damage.steps.append("number at \(span.lowerBound) = \(value)")
        case 2 where !tokens.strings.isEmpty:
            let span = pick(tokens.strings)
            let value = pick(Self.edgeStrings)
            damage.bytes.replaceSubrange(span, with: Array("\"\(value)\"".utf8))
            damage.steps.append("string at \(span.lowerBound) = \"\(value.prefix(40))\"")
        case 3 where !tokens.numbers.isEmpty:
            // `"key":value` once more, with an edge value, at the start of the object holding it.
            let span = pick(tokens.numbers)
            guard let key = tokens.strings.last(where: { $0.upperBound <= span.lowerBound }),
                let open = damage.bytes[..<key.lowerBound].lastIndex(of: UInt8(ascii: "{"))
            else { return damage.steps.append("(no key)") }
            let member = String(decoding: damage.bytes[key], as: UTF8.self) + ":\(pick(Self.edgeNumbers)),"
            damage.bytes.insert(contentsOf: Array(member.utf8), at: open + 1)
            damage.steps.append("insert \(member) at \(open + 1)")
        case 4 where !tokens.numbers.isEmpty || !tokens.strings.isEmpty:
            let span = pick(tokens.numbers + tokens.strings)
            let depth = 10_000
            let closed = below(2) == 0
            let (open, inner, close) = below(2) == 0 ? ("[", "", "]") : ("{\"a\":", "1", "}")
            let nested =
                String(repeating: open, count: depth) + inner + (closed ? String(repeating: close, count: depth) : "")
            damage.bytes.replaceSubrange(span, with: Array(nested.utf8))
            damage.steps.append("value at \(span.lowerBound) nested \(depth) deep\(closed ? "" : ", never closed")")
        case 5:
            damage.bytes = pick(manifests)
            damage.steps.append("another point's manifest")
        default:
            damageBytes(&damage, limit: ManifestStore.maxFileSize)
        }
    }

    static let edgeNumbers = [
        "0", "-1", "1", "2", "1125899906842624", "1125899906842625", "-1125899906842624",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
        "18446744073709551615", "123456789012345678901234567890", "1e308", "1e309", "-1e400", "1e-400",
        "0.5", "-0", "00", "01", "1.", ".5", "1e", "NaN", "Infinity", "null", "true", "\"1\"", "[]", "{}",
    ]
    static let edgeStrings = [
        "", "x", "root", "../../etc", "a/b", "null", "\\u0000", "\\ud800", "\\", "é",
        "00000000-0000-0000-0000-000000000000", String(repeating: "a", count: 100_000),
    ]
}

/// The frames of a framed (version 2) chunk file, found and written back by the store's own
/// header code, to damage frames while choosing what becomes of the index in front of them.
struct ChunkFrames {
    enum Index {
        /// The index bytes as they were, whatever the frames became.
        case kept
        /// An index naming the frames as they are now, behind the digest of the old one:
        /// damage that still does not know to recompute a SHA-256.
        case rewritten
        /// An index naming the frames as they are now, with a new digest: a forger, which
        /// only the SHA-256 of the whole chunk can catch.
        case resealed
    }

    let header: ChunkFile.Header
    let head: [UInt8]
    var frames: [[UInt8]]

    init?(_ file: [UInt8]) {
        guard case .success(let header) = file.withUnsafeBytes({ ChunkFile.decodeHeader($0, fileSize: file.count) }),
            let first = header.frames.first
        else { return nil }
        self.header = header
        head = Array(file[..<first.offset])
        frames = header.frames.map { Array(file[$0.offset..<($0.offset + $0.length)]) }
    }

    func file(_ index: Index) -> [UInt8] {
        var head = head
        if index != .kept {
            let entries = frames.map { frame in
                (length: frame.count, check: frame.withUnsafeBytes { ChunkFile.frameCheck($0) } ?? 0)
            }
            head = ChunkFile.encodeHeader(
                plainLength: header.plainLength, frames: entries, hash: header.hash,
                sealed: header.codec == .sealedFrames)
            if index == .rewritten {
                head.replaceSubrange(
                    (head.count - ChunkFile.digestSize)..., with: self.head.suffix(ChunkFile.digestSize))
            }
        }
        return frames.reduce(into: head) { $0 += $1 }
    }
}

/// Where the numbers and strings of a JSON text are, found by one scan that skips escapes.
struct JSONTokens {
    var numbers: [Range<Int>] = []
    var strings: [Range<Int>] = []

    private static let numberBytes = Set("-+.eE0123456789".utf8)

    init(_ bytes: [UInt8]) {
        var i = 0
        while i < bytes.count {
            let start = i
            if bytes[i] == UInt8(ascii: "\"") {
                i += 1
                while i < bytes.count && bytes[i] != UInt8(ascii: "\"") { i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1 }
                i = min(i + 1, bytes.count)
                strings.append(start..<i)
            } else if bytes[i] == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
                while i < bytes.count && Self.numberBytes.contains(bytes[i]) { i += 1 }
                numbers.append(start..<i)
            } else {
                i += 1
            }
        }
    }
}

// MARK: - One case

/// A chunk of a real backup: its store, the first disk position that uses it, its file and
/// its plain bytes.
struct StoredChunk: CustomStringConvertible {
    var store: ChunkStore
    var chunkSize: Int
    var position: Int
    var hash: ChunkHash
    var file: [UInt8]
    var plain: [UInt8]

    var path: String { store.location(of: hash) }
    var description: String { "chunk at position \(position) of a \(chunkSize >> 10) KiB-chunk repository" }

    /// The plain bytes of frame `index`.
    func frame(_ index: Int) -> ArraySlice<UInt8> {
        let start = index * ChunkFile.frameSize
        return plain[start..<min(start + ChunkFile.frameSize, plain.count)]
    }

    /// Every chunk of `point`, in disk order (stable from run to run, unlike the hashes).
    static func all(of repository: Repository, point: Point) throws -> [StoredChunk] {
        let image = try repository.flatten(point: point.id, disk: "root")
        var seen = Set<ChunkHash>()
        var chunks: [StoredChunk] = []
        for (position, ref) in image.refs.enumerated() {
            guard case .data(let hash) = ref, seen.insert(hash).inserted else { continue }
            var plain = [UInt8](repeating: 0, count: image.length(of: position))
            try plain.withUnsafeMutableBytes { try repository.chunks.load(hash, into: $0) }
            let file = try readBytes(repository.chunks.location(of: hash))
            chunks.append(
                StoredChunk(
                    store: repository.chunks, chunkSize: image.chunkSize, position: position,
                    hash: hash, file: file, plain: plain))
        }
        return chunks
    }
}

/// One iteration: a damaged file written in place of a real one, checks that report the
/// iteration's seed and mutations, and that keep the input when one fails.
struct FuzzCase {
    /// Failed checks in the running test: only the first few are reported and kept, so a
    /// broken decoder leaves a few inputs rather than thousands, and the loop goes on.
    nonisolated(unsafe) static var failures = 0
    static let failureLimit = 10

    let description: String
    let damage: Damage
    let original: [UInt8]
    let path: String

    init(_ what: String, _ iteration: Int, _ damage: Damage, original: [UInt8], path: String) {
        description =
            "seed 0x\(String(FuzzRun.seed, radix: 16)) iteration \(iteration), \(what) (\(path)): "
            + damage.steps.joined(separator: "; ")
        self.damage = damage
        self.original = original
        self.path = path
        Breadcrumb.set(description)
    }

    func write(mode: mode_t) throws {
        try Self.replace(path, with: damage.bytes, sparseLength: damage.sparseLength, mode: mode)
    }
    func restore(mode: mode_t) throws { try Self.replace(path, with: original, sparseLength: nil, mode: mode) }

    /// Loads a chunk into a buffer of its plain length fenced by guard bytes; nil when the
    /// store refuses it, which it must do with `.corrupt`.
    func load(_ chunk: StoredChunk) -> [UInt8]? {
        let fence = 64
        let pattern: UInt8 = 0xa5
        let length = chunk.plain.count
        var buffer = [UInt8](repeating: pattern, count: length + 2 * fence)
        let result = buffer.withUnsafeMutableBytes { raw in
            Result {
                try chunk.store.load(
                    chunk.hash, into: UnsafeMutableRawBufferPointer(rebasing: raw[fence..<(fence + length)]))
            }
        }
        check(
            buffer.prefix(fence).allSatisfy { $0 == pattern } && buffer.suffix(fence).allSatisfy { $0 == pattern },
            "load wrote outside its buffer")
        checkCorrupt(result)
        return (try? result.get()) == nil ? nil : Array(buffer[fence..<(fence + length)])
    }

    /// A refusal must be a `.corrupt` error: the file is damaged, nothing else went wrong.
    func checkCorrupt<T>(_ result: Result<T, Error>, file: StaticString = #filePath, line: UInt = #line) {
        guard case .failure(let error) = result else { return }
        check(
            (error as? VaultError)?.code == .corrupt, "refused with \(error) rather than a .corrupt error", file: file,
            line: line)
    }

    func check(
        _ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line
    ) {
        guard !condition else { return }
        Self.failures += 1
        guard Self.failures <= Self.failureLimit else { return }
        XCTFail("\(message()) — \(description); input kept at \(keep())", file: file, line: line)
    }

    /// Copies the original and the damaged input out of the scratch folder, which goes away.
    private func keep() -> String {
        var template = Array("/tmp/vaultfs-fuzz-failure-XXXXXX".utf8CString)
        let folder = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        try? Self.replace("\(folder)/original", with: original, sparseLength: nil, mode: 0o600)
        try? Self.replace("\(folder)/damaged", with: damage.bytes, sparseLength: damage.sparseLength, mode: 0o600)
        try? description.write(toFile: "\(folder)/case.txt", atomically: false, encoding: .utf8)
        return folder
    }

    /// Unlinks `path` and creates it anew with `mode`, so read-only chunk files can be replaced.
    static func replace(_ path: String, with bytes: [UInt8], sparseLength: Int?, mode: mode_t) throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else { throw TestError.failed("cannot create \(path): errno \(errno)") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw TestError.failed("cannot write \(path): errno \(errno)") }
        if let sparseLength, ftruncate(fd, off_t(sparseLength)) != 0 {
            throw TestError.failed("cannot grow \(path): errno \(errno)")
        }
    }
}
