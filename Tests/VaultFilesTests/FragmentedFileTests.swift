import Foundation
import Glibc
import TestSupport
import VaultCore
import XCTest

@testable import VaultFiles

/// A file in 20,000 extents inside ext4, as a guest leaves a file written in pieces: a sparse
/// source file of short data runs between holes, copied into an image by `mkfs.ext4 -d`
/// (one extent per run). Through `files/` and `vaultctl files get` it must read byte for
/// byte as its source, with its data and holes where the source has them.
final class FragmentedFileTests: XCTestCase {
    private final class Fragmented {
        static let blockSize = 4096
        let scratch = Scratch("frag")
        let source: String
        /// Whether each block of the source holds data; a hole comes first and last.
        let isData: [Bool]
        let size: Int64
        let filesystem: Ext2Filesystem
        let inode: UInt64

        init(runs: Int) throws {
            let bs = Self.blockSize
            let folder = scratch.file("src")
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            source = "\(folder)/fragmented"
            var isData: [Bool] = []
            for run in 0..<runs {
                isData += Array(repeating: false, count: 1 + run % 2)
                isData += Array(repeating: true, count: run % 5 == 0 ? 2 : 1)
            }
            isData += [false, false, false]
            self.isData = isData
            // The end falls inside the last hole, not on a block's edge.
            size = Int64(isData.count * bs - 1000)
            let fd = Glibc.open(source, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
            guard fd >= 0 else { throw TestError.failed("cannot create \(source)") }
            defer { close(fd) }
            var block = [UInt8](repeating: 0, count: bs)
            for (index, data) in isData.enumerated() where data {
                // Each block its own bytes, none of them all zeros (mkfs.ext4 -d leaves those out).
                block.withUnsafeMutableBytes { raw in
                    for word in 0..<bs / 8 {
                        raw.storeBytes(
                            of: 1 << 63 | UInt64(index) << 20 | UInt64(word), toByteOffset: word * 8, as: UInt64.self)
                    }
                }
                guard pwrite(fd, block, bs, off_t(index * bs)) == bs else {
                    throw TestError.failed("cannot write \(source)")
                }
            }
            guard ftruncate(fd, off_t(size)) == 0 else { throw TestError.failed("cannot size \(source)") }
            let image = scratch.file("fs.img")
            try mustRun(
                [
                    "mkfs.ext4", "-q", "-F", "-b", "\(bs)", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d",
                    folder, image, "160M",
                ],
                environment: ["E2FSPROGS_FAKE_TIME": "1764000000"])
            filesystem = try Ext2Filesystem(source: try FileSource(path: image))
            guard
                let entry = try filesystem.entries(filesystem.rootInode).entries.first(where: {
                    $0.name == FileName("fragmented")
                })
            else {
                throw TestError.failed("mkfs.ext4 -d left out the file")
            }
            inode = entry.inode
        }

        /// SEEK_DATA or SEEK_HOLE as the source's block map answers it.
        func expectedSeek(from offset: Int64, data: Bool) -> Int64? {
            guard offset >= 0, offset < size else { return nil }
            var block = Int(offset) / Self.blockSize
            if isData[block] == data { return offset }
            while block < isData.count, isData[block] != data { block += 1 }
            let position = Int64(block * Self.blockSize)
            if data { return position < size ? position : nil }
            return min(position, size)
        }

        /// The source's bytes at `offset`, holes as zeros.
        func sourceBytes(at offset: Int64, count: Int) throws -> [UInt8] {
            let fd = Glibc.open(source, O_RDONLY)
            guard fd >= 0 else { throw TestError.failed("cannot open \(source)") }
            defer { close(fd) }
            var bytes = [UInt8](repeating: 0, count: count)
            let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            return Array(bytes.prefix(max(0, got)))
        }

        /// Whether `bytes` are the source's at `offset`, to its end.
        func isSource(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Bool {
            let expected = try sourceBytes(at: offset, count: bytes.count)
            guard expected.count == bytes.count, !bytes.isEmpty else { return expected.count == bytes.count }
            return expected.withUnsafeBytes { memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 }
        }
    }

    /// Made once: writing the source and mkfs take seconds. XCTest runs this class's tests
    /// one after another on one thread, the only one that touches it.
    nonisolated(unsafe) private static var shared: Fragmented?

    private func fragmented() throws -> Fragmented {
        if let shared = Self.shared { return shared }
        let made = try Fragmented(runs: 20_000)
        Self.shared = made
        return made
    }

    override class func tearDown() {
        shared = nil
        super.tearDown()
    }

    func testAFileInTwentyThousandExtentsKeepsThemAllInItsMap() throws {
        let f = try fragmented()
        let file = try f.filesystem.open(f.inode, extentLimit: ExtentMap.limit)
        let map = try XCTUnwrap(file.map, "the file is read through libext2fs, not its map")
        XCTAssertGreaterThanOrEqual(map.extents.count, 20_000)
        XCTAssertEqual(map.runs.count, 20_000)
        XCTAssertEqual(file.size, f.size)
    }

    func testSeekDataAndSeekHoleFindTheSourcesDataAndHolesFromEveryBlock() throws {
        let f = try fragmented()
        let file = try f.filesystem.open(f.inode)
        let bs = Int64(Fragmented.blockSize)
        var wrong: [String] = []
        for block in 0..<Int64(f.isData.count) {
            for offset in [block * bs, block * bs + 1, block * bs + bs - 1] {
                for data in [true, false] {
                    let got = try file.seek(from: offset, data: data)
                    let expected = f.expectedSeek(from: offset, data: data)
                    if got != expected {
                        wrong.append(
                            "\(data ? "SEEK_DATA" : "SEEK_HOLE") from \(offset): \(got.map(String.init) ?? "ENXIO"), not \(expected.map(String.init) ?? "ENXIO")"
                        )
                    }
                }
            }
        }
        XCTAssertTrue(wrong.isEmpty, "\(wrong.count) wrong answers: \(wrong.prefix(5))")
        XCTAssertNil(try file.seek(from: f.size, data: false))
        XCTAssertNil(try file.seek(from: -1, data: true))
    }

    func testReadsAcrossExtentsHolesAndTheEndGiveTheSourcesBytes() throws {
        let f = try fragmented()
        let file = try f.filesystem.open(f.inode)
        var buffer = [UInt8](repeating: 0xAA, count: 1 << 20)
        // Sizes that start and stop inside blocks, runs and holes, through to the end.
        let counts = [1 << 20, 4096, 1, 12_345, 4097, 8191]
        var offset: Int64 = 0
        var step = 0
        while offset < f.size {
            let count = counts[step % counts.count]
            let got = try buffer.withUnsafeMutableBytes {
                try file.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<count]))
            }
            let expected = min(Int64(count), f.size - offset)
            guard Int64(got) == expected,
                try buffer.withUnsafeBytes({ try f.isSource(UnsafeRawBufferPointer(rebasing: $0[..<got]), at: offset) })
            else {
                return XCTFail(
                    "\(count) bytes at \(offset): \(got) bytes read, not the source's \(expected), or not the same")
            }
            offset += Int64(got)
            step += 1
        }
        XCTAssertEqual(offset, f.size)
        XCTAssertEqual(try buffer.withUnsafeMutableBytes { try file.read(at: f.size, into: $0) }, 0)
    }

    func testCopyingTheFileOutWritesEachDataRunOnceAndSkipsEveryHole() throws {
        let f = try fragmented()
        let volume = Volume(name: "frag", reader: f.filesystem)
        let bs = Fragmented.blockSize
        var expected: [String] = []
        var block = 0
        while block < f.isData.count {
            guard f.isData[block] else {
                block += 1
                continue
            }
            let start = block
            while block < f.isData.count, f.isData[block] { block += 1 }
            expected.append("\(start * bs)+\((block - start) * bs)")
        }
        var written: [String] = []
        var differing = 0
        try FileRestore.copy(volume, file: f.inode, size: f.size, skipHoles: true) { offset, bytes in
            written.append("\(offset)+\(bytes.count)")
            if try !f.isSource(bytes, at: offset) { differing += 1 }
        }
        XCTAssertEqual(written.count, expected.count)
        XCTAssertEqual(written, expected)
        XCTAssertEqual(differing, 0, "runs whose bytes differ from the source's")
        var total: Int64 = 0
        try FileRestore.copy(volume, file: f.inode, size: f.size, skipHoles: false) { offset, bytes in
            XCTAssertEqual(offset, total)
            if try !f.isSource(bytes, at: offset) { differing += 1 }
            total += Int64(bytes.count)
        }
        XCTAssertEqual(total, f.size)
        XCTAssertEqual(differing, 0, "pieces of the whole file that differ from the source's")
    }

    func testAFileWithMoreExtentsThanAMapHoldsIsReadAlikeThroughLibext2fs() throws {
        let f = try fragmented()
        let file = try f.filesystem.open(f.inode, extentLimit: 1000)
        XCTAssertNil(file.map)
        let bs = Int64(Fragmented.blockSize)
        // libext2fs walks the tree from its start for each seek: a sample of places.
        for block in stride(from: Int64(0), to: Int64(f.isData.count), by: 997) {
            for offset in [block * bs, block * bs + 1] {
                XCTAssertEqual(
                    try file.seek(from: offset, data: true), f.expectedSeek(from: offset, data: true),
                    "SEEK_DATA from \(offset)")
                XCTAssertEqual(
                    try file.seek(from: offset, data: false), f.expectedSeek(from: offset, data: false),
                    "SEEK_HOLE from \(offset)")
            }
            var buffer = [UInt8](repeating: 0, count: 3 * Int(bs))
            let got = try buffer.withUnsafeMutableBytes { try file.read(at: block * bs + 100, into: $0) }
            XCTAssertEqual(Array(buffer.prefix(got)), try f.sourceBytes(at: block * bs + 100, count: buffer.count))
        }
    }

    /// A mount counts the maps of open files against its memory, and never keeps more than
    /// their budget: a map that does not fit is walked again for each read, and reads the same.
    func testExtentMapsCountAgainstTheMountsMemoryAndNeverOutgrowTheirBudget() throws {
        let f = try fragmented()
        let budget = try MemoryBudget(bytes: 8 << 20)
        let cache = budget.cache
        let filesystem = try Ext2Filesystem(source: try FileSource(path: f.scratch.file("fs.img")))
        let volume = Volume(name: "root", reader: filesystem, memory: cache)
        let file = try XCTUnwrap(try volume.reader.open(f.inode) as? Ext2File)
        let map = try XCTUnwrap(file.map)
        XCTAssertEqual(cache.chargedBytes, map.bytes)
        XCTAssertEqual(try XCTUnwrap(try volume.reader.open(f.inode) as? Ext2File).map?.extents, map.extents)
        XCTAssertEqual(cache.chargedBytes, map.bytes, "a second open of the file shares its map")

        filesystem.extentMaps.use(budget: map.bytes - 1, memory: cache)
        XCTAssertEqual(cache.chargedBytes, 0)
        var buffer = [UInt8](repeating: 0, count: 300_000)
        for offset: Int64 in [0, 12_345, f.size / 2, f.size - 200_000] {
            let got = try buffer.withUnsafeMutableBytes { try file.read(at: offset, into: $0) }
            XCTAssertEqual(got, 300_000 > f.size - offset ? Int(f.size - offset) : 300_000)
            XCTAssertTrue(
                try buffer.withUnsafeBytes { try f.isSource(UnsafeRawBufferPointer(rebasing: $0[..<got]), at: offset) },
                "\(offset)")
            XCTAssertEqual(filesystem.extentMaps.bytes, 0)
        }
        XCTAssertEqual(cache.chargedBytes, 0)
    }

    /// All volumes' listings and maps share half of the mount's memory, whatever their number.
    func testListingsAndMapsOfManyVolumesShareHalfTheMountsMemory() throws {
        let budget = try MemoryBudget(bytes: 16 << 20)
        let cache = budget.cache
        XCTAssertEqual(Volume.share(of: cache, own: 0, budget: 4 << 20), 4 << 20)
        cache.charge(6 << 20)
        XCTAssertEqual(Volume.share(of: cache, own: 0, budget: 4 << 20), 2 << 20, "others hold 6 of the 8 MiB")
        XCTAssertEqual(Volume.share(of: cache, own: 3 << 20, budget: 4 << 20), 4 << 20, "its own bytes are not others'")
        cache.charge(10 << 20)
        XCTAssertEqual(Volume.share(of: cache, own: 0, budget: 4 << 20), 1 << 20, "never below 1 MiB")
        cache.charge(-16 << 20)
    }

    func testUnwrittenExtentsReadAsZerosAndSeekAsHolesAsThroughLibext2fs() throws {
        let scratch = Scratch("unwritten")
        let folder = scratch.file("src")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: "\(folder)/f", contents: Data(pseudoRandomBytes(40_000, seed: 5)))
        let image = scratch.file("fs.img")
        try mustRun(
            ["mkfs.ext4", "-q", "-F", "-b", "1024", "-d", folder, image, "8M"],
            environment: ["E2FSPROGS_FAKE_TIME": "1764000000"])
        // Blocks 60-90 preallocated (unwritten), and the file made longer than all its blocks.
        try mustRun(["debugfs", "-w", "-R", "fallocate /f 60 90", image])
        try mustRun(["debugfs", "-w", "-R", "sif /f size 100000", image])
        let filesystem = try Ext2Filesystem(source: try FileSource(path: image))
        let inode = try XCTUnwrap(filesystem.entries(filesystem.rootInode).entries.first { $0.name == FileName("f") })
            .inode
        let mapped = try filesystem.open(inode, extentLimit: ExtentMap.limit)
        let walked = try filesystem.open(inode, extentLimit: 0)
        XCTAssertNotNil(mapped.map)
        XCTAssertNil(walked.map)
        XCTAssertEqual(mapped.size, 100_000)
        var wrong: [Int64] = []
        for offset in Int64(-1)...mapped.size + 1 {
            for data in [true, false]
            where try mapped.seek(from: offset, data: data) != walked.seek(from: offset, data: data) {
                wrong.append(offset)
            }
        }
        XCTAssertEqual(wrong, [], "offsets where the map and libext2fs answer differently")
        XCTAssertNil(try mapped.seek(from: 41_000, data: true), "the unwritten blocks are no data")
        var one = [UInt8](repeating: 1, count: 100_100)
        var two = [UInt8](repeating: 2, count: 100_100)
        XCTAssertEqual(try one.withUnsafeMutableBytes { try mapped.read(at: 0, into: $0) }, 100_000)
        XCTAssertEqual(try two.withUnsafeMutableBytes { try walked.read(at: 0, into: $0) }, 100_000)
        XCTAssertTrue(one.prefix(100_000) == two.prefix(100_000))
        XCTAssertEqual(Array(one[40_960..<100_000]), [UInt8](repeating: 0, count: 59_040))
    }

    func testExtentsThatOverlapKeepOnlyTheirNewBlocksAndTouchingOnesMakeOneRun() throws {
        // Inside the one before, backwards, partly over it, and empty: only new blocks stay.
        let damaged = ExtentMap(
            blockSize: 4096,
            extents: [
                .init(logical: 0, count: 4, physical: 100),
                .init(logical: 2, count: 1, physical: 200),
                .init(logical: 6, count: 2, physical: 300),
                .init(logical: 1, count: 1, physical: 400),
                .init(logical: 7, count: 3, physical: 500),
                .init(logical: 12, count: 0, physical: 600),
            ])
        XCTAssertEqual(
            damaged.extents,
            [
                .init(logical: 0, count: 4, physical: 100), .init(logical: 6, count: 2, physical: 300),
                .init(logical: 8, count: 2, physical: 501),
            ])
        XCTAssertEqual(damaged.runs, [.init(start: 0, end: 4), .init(start: 6, end: 10)])
        XCTAssertEqual(
            damaged.pieces(at: 7 * 4096, count: 2 * 4096),
            [.bytes(offset: 301 * 4096, count: 4096), .bytes(offset: 501 * 4096, count: 4096)])
        // Past the last block ext4 numbers, an overlap keeps nothing, and does not trap.
        let far = ExtentMap(
            blockSize: 4096,
            extents: [
                .init(logical: 0xFFFF_FFF0, count: 0x100, physical: 1),
                .init(logical: 0xFFFF_FFFF, count: 0x1000, physical: 2),
            ])
        XCTAssertEqual(far.extents, [.init(logical: 0xFFFF_FFF0, count: 0x100, physical: 1)])
        let map = ExtentMap(
            blockSize: 4096,
            extents: [
                .init(logical: 0, count: 4, physical: 100),
                .init(logical: 4, count: 1, physical: 200),
                .init(logical: 7, count: 1, physical: 300),
            ])
        XCTAssertEqual(map.runs, [.init(start: 0, end: 5), .init(start: 7, end: 8)])
        XCTAssertEqual(map.seek(from: 100, data: false, size: 9 * 4096), 5 * 4096)
        XCTAssertEqual(map.seek(from: 5 * 4096, data: true, size: 9 * 4096), 7 * 4096)
        XCTAssertEqual(
            map.pieces(at: 3 * 4096 + 10, count: 3 * 4096),
            [
                .bytes(offset: 103 * 4096 + 10, count: 4086), .bytes(offset: 200 * 4096, count: 4096),
                .zeros(count: 4106),
            ])
    }
}
