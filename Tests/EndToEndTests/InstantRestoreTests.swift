import Foundation
import TestSupport
import XCTest

/// `vaultctl restore --instant`: a writable image in the real mount that reads the point
/// where the target is not filled yet, while the daemon fills the target behind; killed
/// daemons, refusals, and the point kept from garbage collection meanwhile.
final class InstantRestoreTests: XCTestCase {
    private var scratch: Scratch!
    private var ctl: Vaultctl!
    private var disk: Ext4Image!
    /// The disk as it was at point one.
    private var one: String!
    private var restoreDirectory: String!
    private let chunk = 64 << 10
    private let size = 64 << 20

    override func setUpWithError() throws {
        scratch = Scratch("instant")
        restoreDirectory = scratch.file("restores")
        ctl = Vaultctl(repository: scratch.file("repo"), environment: ["VAULT_RESTORE_DIR": restoreDirectory])
        (disk, one) = try backUpPointOne(ctl, scratch)
    }

    private func mount(_ name: String = "mnt", fillRate: String? = nil, fault: String? = nil) throws
        -> MountedRepository
    {
        var environment = ["VAULT_RESTORE_DIR": restoreDirectory!]
        if let fault { environment["VAULTFS_FAULT"] = fault }
        return try MountedRepository(
            repository: ctl.repository, at: scratch.file(name),
            options: fillRate.map { ["restore_fill_rate=\($0)"] } ?? [], environment: environment)
    }

    /// Starts an instant restore of point one into `target`; returns its id and image path.
    private func start(_ target: String) throws -> (id: String, image: String?) {
        let text = try ctl.run("restore", "web/one", "--to", target, "--instant", "--json")
        let view = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
        return (try XCTUnwrap(view["id"] as? String), view["image"] as? String)
    }

    private func status(_ id: String) throws -> [String: Any] {
        try XCTUnwrap(try ctl.json("restore", "status", id).first)
    }

    /// Waits (at most `timeout` s) until restore `id` is complete.
    private func waitComplete(_ id: String, timeout: TimeInterval = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try status(id)["state"] as? String != "complete" {
            guard Date() < deadline else { throw TestError.failed("restore \(id) not complete: \(try status(id))") }
            usleep(100_000)
        }
    }

    /// Writes `bytes` at `offset` of `path` and flushes them.
    private func write(_ path: String, _ bytes: [UInt8], at offset: Int) throws {
        guard let handle = FileHandle(forUpdatingAtPath: path) else { throw TestError.failed("cannot open \(path)") }
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data(bytes))
        try handle.synchronize()
    }

    private func read(_ path: String, at offset: Int, count: Int) throws -> [UInt8] {
        let handle = try XCTUnwrap(FileHandle(forReadingAtPath: path), path)
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        return Array(try handle.read(upToCount: count) ?? Data())
    }

    func testTheImageIsUsableAtOnceAndTheTargetEndsAsThePointWithItsWrites() throws {
        let mount = try mount(fillRate: "4M")
        let target = scratch.file("target.raw")
        let (id, reported) = try start(target)
        let image = try XCTUnwrap(reported, "the command prints the image's path while a mount runs")
        XCTAssertEqual(image, "\(mount.mountpoint)/.restores/\(id)/root.img")
        XCTAssertEqual(try status(id)["state"] as? String, "filling", "4 MiB/s: 64 MiB take 16 s")
        var expected = try readBytes(one)
        // Reads come from the point before the fill reaches them: the end of the disk first.
        try mount.io {
            XCTAssertEqual(
                try self.read(image, at: self.size - 3 * self.chunk, count: 3 * self.chunk),
                Array(expected[(self.size - 3 * self.chunk)...]))
            // Writes: across two chunks, into a zero chunk, one whole chunk, and the last byte.
            for (offset, count, seed) in [
                (5 * self.chunk - 1000, 3000, 11), (40 << 20, 4096, 12), (900 * self.chunk, self.chunk, 13),
                (self.size - 1, 1, 14),
            ] {
                let bytes = pseudoRandomBytes(count, seed: UInt64(seed))
                try self.write(image, bytes, at: offset)
                expected.replaceSubrange(offset..<(offset + count), with: bytes)
                XCTAssertEqual(
                    try self.read(image, at: offset - 10, count: count + 10),
                    Array(expected[(offset - 10)..<(offset + count)]))
            }
        }
        usleep(1_200_000)
        let filling = try status(id)
        XCTAssertEqual(filling["state"] as? String, "filling")
        XCTAssertGreaterThan(filling["filledBytes"] as? Int ?? 0, 0)
        XCTAssertLessThan(filling["filledBytes"] as? Int ?? .max, size / 2)
        XCTAssertGreaterThan(filling["bytesPerSecond"] as? Double ?? 0, 0)
        XCTAssertGreaterThan(filling["etaSeconds"] as? Double ?? 0, 0)
        // status.json beside the image says the same.
        let shown = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: "\(mount.mountpoint)/.restores/\(id)/status.json")))
        XCTAssertEqual((shown as? [String: Any])?["id"] as? String, id)
        XCTAssertEqual((shown as? [String: Any])?["state"] as? String, "filling")

        // Not finished before the fill is complete, nor while the image is open.
        let early = try ctl.attempt(["restore", "finish", id])
        XCTAssertEqual(early.status, 1)
        XCTAssertTrue(early.stderr.contains("% filled"), early.stderr)
        // Reading it all fills what the filler has not reached (copy on read).
        try mount.io { XCTAssertEqual(try readBytes(image), expected, "the image reads the point with the writes") }
        try waitComplete(id)
        let holder = try XCTUnwrap(FileHandle(forReadingAtPath: image))
        let busy = try ctl.attempt(["restore", "finish", id])
        XCTAssertEqual(busy.status, 1)
        XCTAssertTrue(busy.stderr.contains("is open"), busy.stderr)
        try holder.close()
        try ctl.run("restore", "finish", id)
        // The mount sees it within about a second, as it sees new points; the kernel may keep
        // the name for its one-second entry timeout.
        XCTAssertTrue(eventually(timeout: 10) { !FileManager.default.fileExists(atPath: image) }, "the image goes")
        XCTAssertEqual(try readBytes(target), expected, "the target alone holds the point and every write")
        XCTAssertEqual(try ctl.json("restore", "status").count, 0)
        let history = try ctl.json("restore", "history").filter { $0["id"] as? String == id }
        XCTAssertEqual(history.map { $0["outcome"] as? String }, ["started", "finished"])
        // The target is let go: a plain restore may lock and write it now.
        try ctl.run("restore", "web/one", "--to", target)
        try mustRun(["cmp", target, one])
        mount.unmount()
    }

    func testADaemonKilledAtAnyMomentResumesAndKeepsEveryWrite() throws {
        let target = scratch.file("target.raw")
        var expected = try readBytes(one)
        let id = try start(target).id
        XCTAssertEqual(try status(id)["state"] as? String, "waiting", "no mount serves it yet")
        // Five deaths: between filling a chunk and writing its bit, after a bit, mid-way
        // through chunks, and SIGKILL right after writes were acknowledged.
        let faults: [String?] = [
            "instant-before-bitmap:2", "instant-committed:2", "instant-filled:150", nil, "instant-before-bitmap:5",
        ]
        var unacknowledged: [(offset: Int, bytes: [UInt8])] = []
        var written: [(offset: Int, count: Int)] = []
        for (round, fault) in faults.enumerated() {
            let mount = try self.mount("mnt\(round)", fillRate: "2M", fault: fault)
            let image = mount.path(".restores/\(id)/root.img")
            // What was written before is there, never the point's bytes again; reading the
            // whole image would fill it, so the written ranges and a few others are read.
            try mount.io {
                for (offset, count) in written + [(Int.random(in: 0..<(self.size - 4096)), 4096)] {
                    XCTAssertEqual(
                        try self.read(image, at: offset, count: count), Array(expected[offset..<(offset + count)]),
                        "round \(round): bytes at \(offset) after a restart")
                }
            }
            // A write cut off by a death is written again, so the end state is known.
            for (offset, bytes) in unacknowledged + [
                (Int.random(in: 0..<(size - 8192)), pseudoRandomBytes(Int.random(in: 1...8192), seed: UInt64(round)))
            ] {
                do {
                    try mount.io(timeout: 20) { try self.write(image, bytes, at: offset) }
                    expected.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
                    written.append((offset, bytes.count))
                    unacknowledged.removeAll { $0.offset == offset }
                } catch {
                    if !unacknowledged.contains(where: { $0.offset == offset }) {
                        unacknowledged.append((offset, bytes))
                    }
                }
            }
            if fault == nil {
                usleep(500_000)
                mount.killDaemon()
            } else {
                let deadline = Date().addingTimeInterval(20)
                while mount.isRunning && Date() < deadline { usleep(50_000) }
                XCTAssertFalse(mount.isRunning, "round \(round): \(fault!) was not reached")
            }
            mount.unmount()
            XCTAssertEqual(try status(id)["state"] as? String, "waiting")
        }
        XCTAssertLessThan(try status(id)["filledBytes"] as? Int ?? .max, size / 2, "the fill was cut off every time")
        let mount = try self.mount("mnt-last")
        let image = mount.path(".restores/\(id)/root.img")
        for (offset, bytes) in unacknowledged {
            try mount.io { try self.write(image, bytes, at: offset) }
            expected.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        }
        try waitComplete(id)
        try ctl.run("restore", "finish", id)
        XCTAssertEqual(try readBytes(target), expected)
        mount.unmount()
    }

    func testRefusalsAndThePointIsKeptUntilTheRestoreEnds() throws {
        let target = scratch.file("target.raw")
        let id = try start(target).id
        // One restore a target.
        let twice = try ctl.attempt(["restore", "web/one", "--to", target, "--instant"])
        XCTAssertEqual(twice.status, 1)
        XCTAssertTrue(twice.stderr.contains("already fills"), twice.stderr)
        XCTAssertEqual(
            try ctl.attempt(["restore", "web/one", "--to", target, "--instant", "--from-point", "one"]).status, 64)
        // A directory is no target, and nothing is left of the attempt.
        let folder = try ctl.attempt(["restore", "web/one", "--to", scratch.path, "--instant"])
        XCTAssertEqual(folder.status, 1)
        XCTAssertTrue(folder.stderr.contains("is a directory"), folder.stderr)
        XCTAssertEqual(try ctl.json("restore", "status").count, 1)
        XCTAssertEqual(try ctl.attempt(["restore", "finish", "ffffffffffff"]).status, 1)

        // The point is deleted and collected meanwhile: its data stays for the restore.
        try ctl.run("delete", "web/one")
        try ctl.run("purge", "--older-than", "0s")
        try ctl.run("gc", "--grace", "0")
        let mount = try mount()
        try mount.io {
            XCTAssertEqual(try readBytes(mount.path(".restores/\(id)/root.img")), try readBytes(self.one))
        }
        // Without allow_other, another user reaches neither the image nor its folder.
        let other = try TestUser()
        let denied = try other.run(["dd", "if=\(mount.path(".restores/\(id)/root.img"))", "of=/dev/null", "count=1"])
        XCTAssertNotEqual(denied.status, 0)
        XCTAssertTrue(denied.stderr.contains("denied"), denied.stderr)
        try waitComplete(id)
        // Cancel leaves the target as filled; then the data may go.
        try ctl.run("restore", "cancel", id)
        mustEventually { !FileManager.default.fileExists(atPath: mount.path(".restores/\(id)")) }
        XCTAssertEqual(try readBytes(target), try readBytes(one))
        mount.unmount()
    }

    /// A loop device over the image: the kernel mounts the restored ext4 from it at once and
    /// writes a file; the finished target is clean and holds the file.
    func testALoopDeviceOverTheImageMountsAndWritesTheRestoredFilesystem() throws {
        let mount = try mount(fillRate: "8M")
        let target = scratch.file("target.raw")
        let (id, reported) = try start(target)
        let image = try XCTUnwrap(reported)
        let loop = try mustRun(["losetup", "--find", "--show", image]).trimmingCharacters(in: .whitespacesAndNewlines)
        let folder = scratch.file("fs")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        do {
            defer { _ = try? runCommand(["losetup", "-d", loop]) }
            try mustRun(["mount", "-t", "ext4", loop, folder], timeout: 60)
            defer { _ = try? runCommand(["umount", folder], timeout: 60) }
            XCTAssertEqual(try String(contentsOfFile: "\(folder)/etc/marker", encoding: .utf8), "one\n")
            XCTAssertTrue(FileManager.default.createFile(atPath: "\(folder)/from-loop", contents: Data("loop\n".utf8)))
            try mustRun(["umount", folder], timeout: 60)
        }
        try waitComplete(id)
        // The loop device holds the image open until the kernel has let it go.
        var finish = try ctl.attempt(["restore", "finish", id])
        let deadline = Date().addingTimeInterval(10)
        while finish.status != 0 && Date() < deadline {
            usleep(100_000)
            finish = try ctl.attempt(["restore", "finish", id])
        }
        XCTAssertEqual(finish.status, 0, finish.stderr)
        try Ext4Image.check(target)
        let written = try mustRun(["debugfs", "-R", "cat /from-loop", target])
        XCTAssertEqual(written, "loop\n")
        mount.unmount()
    }

    /// A target on a filesystem that fills up: the fill stops and says why, the image still
    /// reads the whole point, a write that needs room fails with ENOSPC, and the mount stays.
    func testAFullTargetStopsTheFillButNotTheImageOrTheMount() throws {
        let small = scratch.file("small.ext4")
        try mustRun(["truncate", "-s", "12M", small])
        try mustRun(["mkfs.ext4", "-q", "-F", small])
        let folder = scratch.file("small")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try mustRun(["mount", "-o", "loop", small, folder])
        defer { _ = try? runCommand(["umount", folder], timeout: 60) }
        let mount = try mount()
        let (id, reported) = try start("\(folder)/target.raw")
        let image = try XCTUnwrap(reported)
        let deadline = Date().addingTimeInterval(30)
        while try status(id)["state"] as? String != "failed" {
            guard Date() < deadline else { throw TestError.failed("the fill did not fail: \(try status(id))") }
            usleep(100_000)
        }
        let failed = try status(id)
        XCTAssertTrue((failed["error"] as? String ?? "").contains("No space left"), "\(failed)")
        XCTAssertTrue(mount.logText.contains("the fill stopped"), mount.logText)
        try mount.io { XCTAssertEqual(try readBytes(image), try readBytes(self.one), "read from the point") }
        let write = try runCommand(
            ["dd", "if=/dev/urandom", "of=\(image)", "bs=64k", "count=16", "seek=900", "conv=notrunc,fsync"])
        XCTAssertNotEqual(write.status, 0)
        XCTAssertTrue(write.stderr.contains("No space left"), write.stderr)
        XCTAssertTrue(mount.isRunning)
        let shown = try ctl.attempt(["restore", "status"])
        XCTAssertTrue(
            shown.stdout.contains("failed") && shown.stderr.contains("No space left"), shown.stdout + shown.stderr)
        try ctl.run("restore", "cancel", id)
        mount.unmount()
    }

    func testATargetReplacedWhileNoMountRanIsNeverWritten() throws {
        let target = scratch.file("target.raw")
        let id = try start(target).id
        // Another file of the same size takes the target's name before the repository is
        // mounted (a VM image restored by hand, a rename): it must not be filled.
        let other = scratch.file("other.raw")
        let bytes = pseudoRandomBytes(size, seed: 21)
        XCTAssertTrue(FileManager.default.createFile(atPath: other, contents: Data(bytes)))
        try FileManager.default.removeItem(atPath: target)
        try FileManager.default.moveItem(atPath: other, toPath: target)
        let mount = try mount()
        mustEventually { mount.logText.contains("is no longer the file the restore began on") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: mount.path(".restores/\(id)/root.img")))
        XCTAssertEqual(try readBytes(target), bytes)
        XCTAssertEqual(try status(id)["state"] as? String, "waiting")
        try ctl.run("restore", "cancel", id)
        XCTAssertEqual(try readBytes(target), bytes)
        // A restore folder open to others is not read: a record there could name any file.
        try FileManager.default.createDirectory(atPath: restoreDirectory, withIntermediateDirectories: true)
        chmod(restoreDirectory, 0o755)
        let refused = try ctl.attempt(["restore", "status"])
        XCTAssertTrue(refused.stderr.contains("open to others"), refused.stderr)
        mount.unmount()
    }

    private func mustEventually(_ condition: () -> Bool, timeout: TimeInterval = 10) {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() && Date() < deadline { usleep(50_000) }
        XCTAssertTrue(condition())
    }
}

/// A real machine boots from an instant restore: qemu (TCG) with Debian's cloud kernel and a
/// busybox initramfs (scripts/vm-kit.sh) whose root disk is the image in the mount. It mounts
/// the disk read-write, prints the marker from the point, writes a file and powers off; the
/// finished target must then pass `e2fsck -fn` and hold both.
final class InstantRestoreBootTests: XCTestCase {
    static let top = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    /// Kept between runs: the kernel is fetched once.
    static let kit = "/var/cache/vaultfs-tests/vmkit"

    func testAVirtualMachineBootsFromThePointAtOnceAndItsWritesLand() throws {
        try mustRun(["\(Self.top)/scripts/vm-kit.sh", Self.kit], timeout: 900)
        let scratch = Scratch("instant-boot")
        let restores = scratch.file("restores")
        let ctl = Vaultctl(repository: scratch.file("repo"), environment: ["VAULT_RESTORE_DIR": restores])
        let marker = "point-one-\(UInt32.random(in: 0...UInt32.max))"
        let disk = try Ext4Image.make(
            at: scratch.file("vm.img"), size: "256M",
            files: ["marker.txt": Array("\(marker)\n".utf8), "data/a.bin": pseudoRandomBytes(24 << 20, seed: 5)])
        try ctl.run("init", ctl.repository)
        try ctl.run("server", "add", "vm", "--disk", "root=\(disk.path)")
        try ctl.run("backup", "vm", "--name", "one")
        let mount = try MountedRepository(
            repository: ctl.repository, at: scratch.file("mnt"), environment: ["VAULT_RESTORE_DIR": restores])
        let target = scratch.file("vm-restored.raw")
        let started = Date()
        let text = try ctl.run("restore", "vm/one", "--to", target, "--instant", "--json")
        let view = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
        let id = try XCTUnwrap(view["id"] as? String)
        let image = try XCTUnwrap(view["image"] as? String, text)
        let boot = try runCommand(
            [
                "\(Self.top)/scripts/vm-boot.sh", Self.kit, image, "vaultfs.marker=/marker.txt",
                "vaultfs.write=/from-vm.txt",
            ], environment: ["VM_TIMEOUT": "180"], timeout: 200)
        let output = boot.stdout
        XCTAssertEqual(boot.status, 0, "\(output)\n\(boot.stderr)\n\(mount.logText)")
        XCTAssertTrue(output.contains("VAULTFS-VM: first-read-done"), output)
        XCTAssertTrue(output.contains("VAULTFS-VM: marker=\(marker)"), output)
        XCTAssertTrue(output.contains("VAULTFS-VM: wrote"), output)
        print("instant restore to a powered-off VM: \(String(format: "%.1f", Date().timeIntervalSince(started))) s")

        let deadline = Date().addingTimeInterval(120)
        while try ctl.json("restore", "status", id).first?["state"] as? String != "complete" {
            guard Date() < deadline else { throw TestError.failed("the fill did not complete: \(mount.logText)") }
            usleep(200_000)
        }
        try ctl.run("restore", "finish", id)
        mount.unmount()
        try Ext4Image.check(target)
        let written = try mustRun(["debugfs", "-R", "cat /from-vm.txt", target])
        XCTAssertEqual(written.trimmingCharacters(in: .whitespacesAndNewlines), "written by the vm")
        let kept = try mustRun(["debugfs", "-R", "cat /marker.txt", target])
        XCTAssertEqual(kept.trimmingCharacters(in: .whitespacesAndNewlines), marker)
        let random = try mustRun(["debugfs", "-R", "stat /from-vm.txt.bin", target])
        XCTAssertTrue(random.contains("Size: 8388608"), random)
    }
}
