import Foundation
import TestSupport
import XCTest

/// A repository of 64 KiB chunks holding point web/one of a 64 MiB ext4 disk (two files of
/// random data and `etc/marker` saying "one"); returns the disk and a copy of it as backed up.
func backUpPointOne(_ ctl: Vaultctl, _ scratch: Scratch) throws -> (disk: Ext4Image, one: String) {
    let disk = try Ext4Image.make(
        at: scratch.file("web.img"), size: "64M",
        files: [
            "data/a.bin": pseudoRandomBytes(12 << 20, seed: 1), "data/b.bin": pseudoRandomBytes(6 << 20, seed: 2),
            "etc/marker": Array("one\n".utf8),
        ])
    try ctl.run("init", ctl.repository, "--chunk-size", "64K")
    try ctl.run("server", "add", "web", "--disk", "root=\(disk.path)")
    try ctl.run("backup", "web", "--name", "one")
    let one = scratch.file("one.img")
    try disk.snapshot(to: one)
    return (disk, one)
}

/// `vaultctl restore`: a point's disk written onto a file or a block device, only where the
/// target differs; through the real binary, onto real ext4 images and loop devices.
final class RestoreTests: XCTestCase {
    private var scratch: Scratch!
    private var ctl: Vaultctl!
    private var disk: Ext4Image!
    /// The disk as it was at point one, and at point two.
    private var one: String!
    private var two: String!
    private let chunk = 64 << 10
    private let size = 64 << 20

    override func setUpWithError() throws {
        scratch = Scratch("restore")
        ctl = Vaultctl(
            repository: scratch.file("repo"),
            environment: ["VAULT_CONFIG_DIR": scratch.file("etc"), "VAULT_RESTORE_DIR": scratch.file("restores")])
        (disk, one) = try backUpPointOne(ctl, scratch)
        try disk.write("data/b.bin", pseudoRandomBytes(3 << 20, seed: 3))
        try disk.write("etc/marker", Array("two\n".utf8))
        try ctl.run("backup", "web", "--name", "two")
        two = scratch.file("two.img")
        try disk.snapshot(to: two)
    }

    private func restore(_ arguments: String...) throws -> [String: Any] {
        let text = try ctl.run(["restore"] + arguments + ["--json"])
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    private func bytes(_ report: [String: Any], _ key: String) -> Int { (report[key] as? Int) ?? -1 }

    /// Chunk positions at which two files differ.
    private func differingChunks(_ a: String, _ b: String) throws -> Int {
        let (x, y) = (try readBytes(a), try readBytes(b))
        XCTAssertEqual(x.count, y.count)
        return stride(from: 0, to: x.count, by: chunk).filter {
            x[$0..<min($0 + chunk, x.count)] != y[$0..<min($0 + chunk, y.count)]
        }.count
    }

    func testANewFileIsMadeSparseAndHoldsThePoint() throws {
        let target = scratch.file("new.img")
        let report = try restore("web/one", "--to", target)
        try mustRun(["cmp", target, one])
        try Ext4Image.check(target)
        XCTAssertEqual(report["createdTarget"] as? Bool, true)
        XCTAssertEqual(bytes(report, "comparedBytes"), 0, "a new file is not read")
        XCTAssertLessThan(allocatedBytes(target), Int64(size / 2), "zero chunks are holes")
        // Nothing differs now: a second run writes nothing.
        let again = try restore("web/one", "--to", target)
        XCTAssertEqual(bytes(again, "writtenBytes"), 0)
        XCTAssertEqual(bytes(again, "zeroedBytes"), 0)
        // Only what is not a hole in the file is read to compare.
        XCTAssertGreaterThan(bytes(again, "comparedBytes"), 0)
        XCTAssertLessThan(bytes(again, "comparedBytes"), size / 2)
    }

    func testOnlyTheChunksThatDifferAreWritten() throws {
        let target = scratch.file("target.img")
        try mustRun(["cp", "--sparse=always", one, target])
        // About 1% of the 1,024 chunks: scattered 4 KiB writes, one into a zero chunk.
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: target))
        let offsets = [3, 150, 333, 511, 700, 901, 1010].map { UInt64($0 * chunk + 4096) }
        for (index, offset) in offsets.enumerated() {
            try handle.seek(toOffset: offset)
            handle.write(Data(pseudoRandomBytes(4096, seed: UInt64(100 + index))))
        }
        try handle.close()
        let changed = try differingChunks(target, one)
        XCTAssertEqual(changed, offsets.count)
        let report = try restore("web/one", "--to", target)
        try mustRun(["cmp", target, one])
        try Ext4Image.check(target)
        XCTAssertEqual(
            (report["writtenChunks"] as? Int ?? 0) + (report["zeroedChunks"] as? Int ?? 0), changed, "\(report)")
        XCTAssertEqual(bytes(report, "writtenBytes") + bytes(report, "zeroedBytes"), changed * chunk)
        XCTAssertEqual(bytes(report, "unchangedBytes"), size - changed * chunk)
        XCTAssertEqual(report["createdTarget"] as? Bool, false)
        // The host's restore history says what it wrote and left.
        let history = try XCTUnwrap(try ctl.json("restore", "history").last)
        XCTAssertEqual(history["kind"] as? String, "compare")
        XCTAssertEqual(history["outcome"] as? String, "done")
        XCTAssertEqual(history["writtenBytes"] as? Int, bytes(report, "writtenBytes"))
        XCTAssertEqual(history["unchangedBytes"] as? Int, bytes(report, "unchangedBytes"))
    }

    func testFromPointWritesWhatDiffersBetweenThePointsInBothDirections() throws {
        let target = scratch.file("target.img")
        try mustRun(["cp", "--sparse=always", two, target])
        let between = try differingChunks(one, two)
        XCTAssertGreaterThan(between, 0)
        // Back to the older point, then forward to the newer one.
        let back = try restore("web/one", "--to", target, "--from-point", "two")
        try mustRun(["cmp", target, one])
        XCTAssertLessThanOrEqual(bytes(back, "writtenBytes") + bytes(back, "zeroedBytes"), between * chunk)
        XCTAssertLessThanOrEqual(bytes(back, "comparedBytes"), 32 * chunk, "the target is only spot-checked")
        let forward = try restore("web/two", "--to", target, "--from-point", "web/one")
        try mustRun(["cmp", target, two])
        try Ext4Image.check(target)
        XCTAssertGreaterThan(bytes(forward, "writtenBytes"), 0)
        XCTAssertLessThanOrEqual(bytes(forward, "writtenBytes") + bytes(forward, "zeroedBytes"), between * chunk)

        // A target that holds neither point is refused, and left as it was.
        let other = try Ext4Image.make(
            at: scratch.file("other.img"), size: "64M", files: ["x.bin": pseudoRandomBytes(20 << 20, seed: 9)])
        let before = try readBytes(other.path)
        let refused = try ctl.attempt(["restore", "web/two", "--to", other.path, "--from-point", "one"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("does not hold point one"), refused.stderr)
        XCTAssertEqual(try readBytes(other.path), before)
        // A file shorter than the point's disk does not hold it.
        let short = scratch.file("short.img")
        try mustRun(["cp", "--sparse=always", one, short])
        try mustRun(["truncate", "-s", "60M", short])
        let shortBefore = try readBytes(short)
        let cut = try ctl.attempt(["restore", "web/two", "--to", short, "--from-point", "one"])
        XCTAssertEqual(cut.status, 1)
        XCTAssertTrue(cut.stderr.contains("it does not hold that point"), cut.stderr)
        XCTAssertEqual(try readBytes(short), shortBefore)
        // --from-point with no file there says so, and makes none.
        let absent = scratch.file("absent.img")
        XCTAssertTrue(
            try ctl.attempt(["restore", "web/two", "--to", absent, "--from-point", "one"]).stderr.contains(
                "there was no such file"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: absent))
    }

    func testARestoreKilledAtAnyMomentEndsRightWhenRunAgain() throws {
        // SIGKILL at the Nth chunk written: onto a new file, onto a copy of the other point
        // (compared chunk by chunk), and from that point.
        let cases: [(count: Int, start: String)] = [(1, "new"), (40, "new"), (3, "compare"), (3, "from"), (12, "from")]
        for (run, (count, start)) in cases.enumerated() {
            let target = scratch.file("killed-\(run).img")
            if start != "new" { try mustRun(["cp", "--sparse=always", one, target]) }
            let arguments = ["restore", "web/two", "--to", target] + (start == "from" ? ["--from-point", "one"] : [])
            let killed = try ctl.attempt(arguments, extra: ["VAULTFS_FAULT": "restore-written:\(count)"])
            XCTAssertNotEqual(killed.status, 0, "\(start), killed at write \(count)")
            XCTAssertNotEqual(
                try runCommand(["cmp", "-s", target, two]).status, 0, "\(start): cut off at write \(count)")
            try ctl.run(arguments)
            try mustRun(["cmp", target, two])
        }
        try Ext4Image.check(scratch.file("killed-1.img"))
    }

    /// Runs `body` while another process holds a read lock on part of `path`, as a running
    /// qemu does on its disks; the holder is stopped in every outcome, and waited for.
    private func whileLocked(_ path: String, _ body: () throws -> Void) throws {
        let ready = scratch.file("\((path as NSString).lastPathComponent).locked")
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        holder.arguments = [
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); fcntl.lockf(f, fcntl.LOCK_SH, 1, 100); open(sys.argv[2], 'w').close(); time.sleep(60)",
            path, ready,
        ]
        try holder.run()
        defer {
            holder.terminate()
            holder.waitUntilExit()
        }
        XCTAssertTrue(eventually(timeout: 10) { FileManager.default.fileExists(atPath: ready) }, "no lock on \(path)")
        try body()
    }

    func testTargetsInUseOrTooSmallAreRefusedBeforeAnythingIsWritten() throws {
        func refused(_ target: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let result = try ctl.attempt(["restore", "web/one", "--to", target])
            XCTAssertEqual(result.status, 1, result.stderr, file: file, line: line)
            XCTAssertTrue(result.stderr.contains(text), result.stderr, file: file, line: line)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr, file: file, line: line)
        }
        try refused("-", "cannot write to standard output")
        try refused(scratch.path, "it is a directory")
        try refused("/dev/null", "writes in place to a block device or a regular file")

        // A file a loop device is attached to.
        let attached = scratch.file("attached.img")
        try mustRun(["cp", "--sparse=always", two, attached])
        let loop = try mustRun(["losetup", "--find", "--show", attached]).trimmingCharacters(
            in: .whitespacesAndNewlines)
        do {
            defer { _ = try? runCommand(["losetup", "-d", loop], timeout: 10) }
            try refused(attached, "is attached to \(loop)")
        }

        // A file another program holds a lock on, as a running qemu does.
        let locked = scratch.file("locked.img")
        try mustRun(["cp", "--sparse=always", two, locked])
        try whileLocked(locked) { try refused(locked, "is in use") }
        try mustRun(["cmp", locked, two])

        // A mounted device, then one smaller than the disk; the same device unmounted works.
        let backing = scratch.file("device.img")
        try mustRun(["cp", "--sparse=always", two, backing])
        let device = try mustRun(["losetup", "--find", "--show", backing]).trimmingCharacters(
            in: .whitespacesAndNewlines)
        defer { _ = try? runCommand(["losetup", "-d", device], timeout: 10) }
        let mountpoint = scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        try mustRun(["mount", "-o", "ro", device, mountpoint])
        do {
            defer { _ = try? runCommand(["umount", mountpoint], timeout: 20) }
            try refused(device, "is mounted or in use")
        }
        let small = scratch.file("small.img")
        try mustRun(["truncate", "-s", "32M", small])
        let smallDevice = try mustRun(["losetup", "--find", "--show", small]).trimmingCharacters(
            in: .whitespacesAndNewlines)
        do {
            defer { _ = try? runCommand(["losetup", "-d", smallDevice], timeout: 10) }
            try refused(smallDevice, "less than the disk's")
            // A device another program holds a lock on, as a running qemu does with its disks.
            try whileLocked(smallDevice) { try refused(smallDevice, "is in use") }
        }
        XCTAssertEqual(allocatedBytes(small), 0)
        try mustRun(["cmp", backing, two])
        let report = try restore("web/one", "--to", device)
        try mustRun(["cmp", device, one])
        XCTAssertGreaterThan(bytes(report, "writtenBytes") + bytes(report, "zeroedBytes"), 0)
        XCTAssertLessThan(bytes(report, "writtenBytes") + bytes(report, "zeroedBytes"), size / 4)
    }
}
