import Foundation
import Glibc
import TestSupport
import VaultCore
import XCTest

@testable import VaultFiles

/// The path from a disk's bytes to partitions, directory entries and file bytes survives
/// damage: real partition tables (sfdisk) and a real ext4 filesystem (mkfs.ext4 -d) are
/// mutated by the seeded fuzzer of `DecoderFuzzTests` and read in full. No mutation may trap
/// or hang; every partition found must lie on the disk. A trap prints the seed and the
/// iteration (`VAULTFS_FUZZ_ONLY` replays it). Iterations are tenths of
/// `VAULTFS_FUZZ_ITERATIONS`, like the decoders'.
final class FilesystemFuzzTests: XCTestCase {
    override func setUp() { Breadcrumb.install() }
    override func tearDown() { Breadcrumb.remove() }

    func testDamagedPartitionTablesNeverTrapAndStayOnTheDisk() throws {
        let scratch = Scratch("ptfuzz")
        var disks: [[UInt8]] = []
        for script in ["label: dos\n,2M,L\n,,E\n,1M,L\n,1M,L\n", "label: gpt\n,2M\n,2M\n,1M\n"] {
            let path = scratch.file("disk")
            try PartitionedDisk.make(at: path, size: "8M", script: script, contents: [:])
            let table = try XCTUnwrap(try PartitionTable.read(MemorySource(try readBytes(path))))
            XCTAssertGreaterThanOrEqual(table.partitions.count, 3)
            disks.append(try readBytes(path))
            unlink(path)
        }
        for iteration in FuzzRun.iterations(tenths: 2) {
            var random = FuzzRun.random(iteration)
            var bytes = disks[iteration % 2]
            var steps: [String] = []
            for _ in 0..<(1 + Int(random.next() % 8)) {
                // The MBR, the GPT header and entries at the start, the backup GPT at the end.
                let region = random.next() % 3
                let offset =
                    region == 0
                    ? Int(random.next() % 1024)
                    : region == 1
                        ? 1024 + Int(random.next() % 16384)
                        : bytes.count - 1 - Int(random.next() % (34 * 512))
                bytes[offset] = UInt8(truncatingIfNeeded: random.next())
                steps.append("byte \(offset)")
            }
            Breadcrumb.set(
                "partition table, seed 0x\(String(FuzzRun.seed, radix: 16)) iteration \(iteration): \(steps)")
            guard let table = try? PartitionTable.read(MemorySource(bytes)) else { continue }
            for partition in table.partitions {
                XCTAssertTrue(
                    partition.offset >= 0 && partition.size >= 0
                        && partition.offset + partition.size <= Int64(bytes.count),
                    "iteration \(iteration): partition \(partition.number) lies off the disk")
            }
        }
    }

    func testDamagedExt4MetadataNeverTrapsTheReader() throws {
        let scratch = Scratch("fsfuzz")
        let source = scratch.file("src")
        for folder in ["etc/deep/deeper", "var/log", "home/u"] {
            try FileManager.default.createDirectory(atPath: "\(source)/\(folder)", withIntermediateDirectories: true)
        }
        for k in 0..<40 {
            _ = FileManager.default.createFile(atPath: "\(source)/var/log/f\(k)", contents: Data("line \(k)\n".utf8))
        }
        _ = FileManager.default.createFile(
            atPath: "\(source)/home/u/big", contents: Data(pseudoRandomBytes(200_000, seed: 3)))
        try FileManager.default.createSymbolicLink(atPath: "\(source)/etc/link", withDestinationPath: "deep/deeper")
        try FileManager.default.createSymbolicLink(
            atPath: "\(source)/etc/long", withDestinationPath: String(repeating: "x/", count: 60))
        try mustRun(["setfattr", "-n", "user.a", "-v", "1", "\(source)/etc"])
        // With metadata checksums most damage is caught by them; without (ext2, and ext4
        // made without) it reaches the parsers of inodes, extents, directories and xattrs.
        var originals: [[UInt8]] = []
        for (k, options) in [["-t", "ext4"], ["-t", "ext4", "-O", "^metadata_csum"], ["-t", "ext2"]].enumerated() {
            let image = scratch.file("fs\(k).img")
            try mustRun(
                ["mke2fs", "-q", "-F"] + options + ["-d", source, image, "2M"],
                environment: ["E2FSPROGS_FAKE_TIME": "1764000000"])
            originals.append(try readBytes(image))
        }
        // Everything mkfs wrote lies in the first blocks of these small filesystems.
        let metadata = 512 << 10
        // Half of the damage lands on bytes mkfs set (structures), half anywhere in the area.
        let written = originals.map { bytes in (1024..<metadata).filter { bytes[$0] != 0 } }
        var opened = 0
        for iteration in FuzzRun.iterations(tenths: 1) {
            var random = FuzzRun.random(iteration)
            var bytes = originals[iteration % originals.count]
            var steps: [String] = []
            for _ in 0..<(1 + Int(random.next() % 12)) {
                let set = written[iteration % originals.count]
                let offset =
                    random.next() % 2 == 0
                    ? set[random.below(set.count)] : 1024 + Int(random.next() % UInt64(metadata - 1024))
                bytes[offset] = random.next() % 4 == 0 ? 0 : UInt8(truncatingIfNeeded: random.next())
                steps.append("byte \(offset)")
            }
            Breadcrumb.set("ext4, seed 0x\(String(FuzzRun.seed, radix: 16)) iteration \(iteration): \(steps)")
            let contents = DiskContents.probe(disk: "fuzz", source: MemorySource(bytes))
            guard let volume = contents.volumes["fuzz"] else { continue }
            opened += 1
            walk(volume)
        }
        print("FilesystemFuzzTests: \(opened) damaged filesystems opened and walked")
        XCTAssertGreaterThan(opened, 0, "no damaged filesystem opened: the fuzzer tested nothing past the superblock")
    }

    /// Reads everything a volume shows, bounded: a damaged tree may loop.
    private func walk(_ volume: Volume) {
        var pending: [(UInt64, Int)] = [(volume.rootInode, 0)]
        var seen: Set<UInt64> = []
        var budget = 2000
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while let (inode, depth) = pending.popLast(), budget > 0 {
            budget -= 1
            guard seen.insert(inode).inserted, let a = try? volume.reader.attributes(inode) else { continue }
            _ = try? volume.reader.attributeNames(inode).map { try? volume.reader.attribute(inode, named: $0) }
            switch a.kind {
            case .directory where depth < 32:
                for entry in (try? volume.entries(inode)) ?? [] { pending.append((entry.inode, depth + 1)) }
                _ = try? volume.child(of: inode, named: "f1")
            case .file:
                guard let file = try? volume.reader.open(inode) else { continue }
                _ = buffer.withUnsafeMutableBytes { try? file.read(at: 0, into: $0) }
                _ = try? file.seek(from: 0, data: true)
                _ = try? file.seek(from: 0, data: false)
            case .symlink:
                _ = try? volume.reader.linkTarget(inode)
            default:
                break
            }
        }
    }

    func testASuperblockWhoseGroupDescriptorsCannotFitIsRefusedBeforeLibext2fsAllocates() throws {
        let scratch = Scratch("sbfit")
        let source = scratch.file("src")
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let image = scratch.file("fs.img")
        try SourceTree(path: source).ext4(at: image, size: "4M")
        var bytes = try readBytes(image)
        XCTAssertTrue(Ext2Filesystem.descriptorsFit(Array(bytes[1024..<2048]), in: Int64(bytes.count)))
        XCTAssertNotNil(try? Ext2Filesystem(source: MemorySource(bytes)))
        // Eight blocks per group and a 64-bit block count: millions of groups on a 4 MiB image.
        bytes[1024 + 32] = 8
        bytes[1024 + 33] = 0
        bytes[1024 + 34] = 0
        bytes[1024 + 35] = 0
        bytes[1024 + 96] |= 0x80
        bytes[1024 + 336] = 0x40
        XCTAssertFalse(Ext2Filesystem.descriptorsFit(Array(bytes[1024..<2048]), in: Int64(bytes.count)))
        XCTAssertThrowsError(try Ext2Filesystem(source: MemorySource(bytes))) {
            XCTAssertTrue("\($0)".contains("group descriptors would not fit"), "\($0)")
        }
    }
}
