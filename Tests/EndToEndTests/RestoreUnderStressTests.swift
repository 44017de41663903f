import Foundation
import TestSupport
import VaultCore
import XCTest

/// Restores work on the worst day: from read-only media, from a full disk, while retention
/// deletes the point being read, and into whatever `-o` names without replacing it.
final class RestoreUnderStressTests: XCTestCase {
    private func exportMatches(_ ctl: Vaultctl, _ point: String, _ copy: String, scratch: Scratch) throws {
        let out = scratch.file("export-\(UUID().uuidString).img")
        defer { unlink(out) }
        try ctl.run("export", point, "-o", out)
        try mustRun(["cmp", out, copy])
    }

    func testReadOnlyBindMountStillListsExportsAndMounts() throws {
        let fixture = try MountFixture(policyPoints: 2, manual: ["m1"])
        let readOnly = fixture.scratch.file("ro")
        try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: true)
        try mustRun(["mount", "--bind", fixture.ctl.repository, readOnly])
        defer { _ = try? runCommand(["umount", "-l", readOnly], timeout: 10) }
        try mustRun(["mount", "-o", "remount,bind,ro", readOnly])
        let ctl = Vaultctl(repository: readOnly)

        XCTAssertEqual(try ctl.json("points").count, fixture.names.count)
        XCTAssertEqual(try ctl.json("history").count, fixture.names.count)
        for name in fixture.names {
            try exportMatches(ctl, "web/\(name)", fixture.asItWas[name]!, scratch: fixture.scratch)
        }
        XCTAssertEqual(try ctl.attempt(["verify"]).status, 0)
        for refused in [["backup", "web"], ["delete", "web/m1"], ["gc"], ["vault", "create", "x"]] {
            let result = try ctl.attempt(refused)
            XCTAssertNotEqual(result.status, 0)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(refused): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("read-only"), "\(refused): \(result.stderr)")
        }
        let mount = try MountedRepository(repository: readOnly, at: fixture.scratch.file("mnt"))
        defer { mount.unmount() }
        try mustRun(["cmp", mount.path("prod/web/m1/root.img"), fixture.asItWas["m1"]!], timeout: 60)
        let mkdir = try runCommand(["mkdir", mount.path("prod/web/now")], timeout: 10)
        XCTAssertTrue(mkdir.stderr.contains("Read-only file system"), mkdir.stderr)
    }

    func testFullRepositoryDiskStillRestoresAndRefusesBackupsCleanly() throws {
        let scratch = Scratch("full")
        let small = scratch.file("small")
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        try mustRun(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", small])
        defer { _ = try? runCommand(["umount", "-l", small], timeout: 10) }
        let disk = try Ext4Image.make(
            at: scratch.file("d.img"), size: "8M", files: ["f": pseudoRandomBytes(600_000, seed: 4)])
        let copy = scratch.file("copy.img")
        try disk.snapshot(to: copy)
        let ctl = Vaultctl(repository: "\(small)/repo")
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run("vault", "create", "prod")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        try ctl.run("backup", "web", "--name", "one")
        try disk.write("g", pseudoRandomBytes(900_000, seed: 5))
        _ = try runCommand(["dd", "if=/dev/zero", "of=\(small)/filler", "bs=64K"], timeout: 30)

        XCTAssertEqual(try ctl.json("points").count, 1)
        try exportMatches(ctl, "web/one", copy, scratch: scratch)
        let mount = try MountedRepository(repository: ctl.repository, at: scratch.file("mnt"))
        try mustRun(["cmp", mount.path("prod/web/one/root.img"), copy], timeout: 60)
        mount.unmount()
        let backup = try ctl.attempt(["backup", "web", "--name", "two"])
        XCTAssertNotEqual(backup.status, 0)
        XCTAssertTrue((backup.stdout + backup.stderr).contains("full"), backup.stdout + backup.stderr)
        try exportMatches(ctl, "web/one", copy, scratch: scratch)
        unlink("\(small)/filler")
        try ctl.run("backup", "web", "--name", "three")
        XCTAssertEqual(try ctl.attempt(["verify"]).status, 0)
    }

    func testImageHeldOpenReadsToTheEndWhileRetentionAndCollectionDeleteItsPoint() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let ctl = fixture.ctl
        try ctl.run(
            "policy", "set", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "0", "--keep-fulls", "1",
            "--now", "2030-01-01T12:00")
        let first = fixture.names[0]
        let mount = try fixture.mount(["cache_size=1M"])
        defer { mount.unmount() }
        let path = mount.path("prod/web/\(first)/root.img")
        let expected = try readBytes(fixture.asItWas[first]!)
        let handle = try mount.io { try XCTUnwrap(FileHandle(forReadingAtPath: path)) }
        var read = try mount.io { try handle.read(upToCount: 1 << 20) ?? Data() }

        // The disk changes completely and the next slot's full makes retention delete the
        // first chain; gc runs too.
        try fixture.disk.write("data/base.bin", pseudoRandomBytes(1 << 20, seed: 77))
        try fixture.disk.write("data/slot-0.bin", pseudoRandomBytes(120_000, seed: 78))
        try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T20:00")
        try ctl.run("gc")
        XCTAssertNil(try ctl.json("points").first { $0["name"] as? String == first }, "retention kept \(first)")

        read += try mount.io(timeout: 60) { try handle.readToEnd() ?? Data() }
        XCTAssertEqual(read.count, expected.count)
        XCTAssertTrue([UInt8](read) == expected, "the open image changed while its point was deleted")
        try handle.close()
        // Once it is closed (the release reaches the daemon a moment later), its data goes.
        XCTAssertTrue(try eventually(timeout: 10) { !(try ctl.run("gc")).hasPrefix("removed 0 chunk") })
        XCTAssertEqual(try ctl.attempt(["verify"]).status, 0)
    }

    func testExportFollowsLinksWritesDevicesInPlaceAndNeverWritesThroughPlantedLinks() throws {
        let scratch = Scratch("export")
        let disk = try Ext4Image.make(
            at: scratch.file("d.img"), size: "8M", files: ["f": pseudoRandomBytes(300_000, seed: 6)])
        let ctl = Vaultctl(repository: scratch.file("repo"))
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run("server", "add", "web", "--disk", "root=\(disk.path)")
        try ctl.run("backup", "web", "--name", "one")

        // A link planted at the name older versions used for their temporary file.
        let victim = scratch.file("victim")
        XCTAssertTrue(FileManager.default.createFile(atPath: victim, contents: Data("precious\n".utf8)))
        let restore = scratch.file("restore.img")
        try FileManager.default.createSymbolicLink(atPath: restore + ".vaultfs-partial", withDestinationPath: victim)
        try ctl.run("export", "web/one", "-o", restore)
        try mustRun(["cmp", restore, disk.path])
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious\n")
        XCTAssertEqual(try mustRun(["stat", "-c", "%a", restore]), "600\n")

        // A link as the output is followed to its target, which is replaced; the link stays.
        let link = scratch.file("link.img")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: victim)
        try ctl.run("export", "web/one", "-o", link)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), victim)
        try mustRun(["cmp", victim, disk.path])

        // /dev/stdout streams; a FIFO and a character device are written in place.
        try mustRun(
            ["sh", "-c", "\"$0\" export web/one -o /dev/stdout | cmp - \"$1\"", productPath("vaultctl"), disk.path],
            environment: ["VAULT_REPO": ctl.repository])
        let fifo = scratch.file("fifo")
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        try mustRun(
            [
                "sh", "-c", "cat \"$2\" > \"$3\" & \"$0\" export web/one -o \"$2\" && wait && cmp \"$3\" \"$1\"",
                productPath("vaultctl"), disk.path, fifo, scratch.file("from-fifo"),
            ], environment: ["VAULT_REPO": ctl.repository])
        XCTAssertEqual(try mustRun(["stat", "-c", "%F", fifo]), "fifo\n")
        try ctl.run("export", "web/one", "-o", "/dev/null")
        XCTAssertEqual(try mustRun(["stat", "-c", "%F", "/dev/null"]), "character special file\n")

        // Outputs that cannot be written are refused at once, with one line.
        for bad in [scratch.path, "/proc/version", scratch.file("no/such/dir/x.img")] {
            let result = try ctl.attempt(["export", "web/one", "-o", bad])
            XCTAssertNotEqual(result.status, 0, bad)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(bad): \(result.stderr)")
        }
        XCTAssertEqual(try mustRun(["find", scratch.path, "-name", "*vaultfs-partial-*"]), "")
    }

    func testBackupNowThatCannotStartLeavesAFailedRowAndAMatchingErrno() throws {
        let fixture = try MountFixture(policyPoints: 1)
        try fixture.ctl.run(
            "server", "add", "gone", "--vault", "prod", "--disk", "root=\(fixture.scratch.file("missing.img"))")
        let log = fixture.scratch.file("vaultfs.log")
        let mount = try fixture.mount(["allow_other", "log=\(log)"])
        defer { mount.unmount() }
        chmod(fixture.scratch.path, 0o755)

        let missing = try runCommand(["mkdir", mount.path("prod/gone/now")], timeout: 20)
        XCTAssertTrue(missing.stderr.contains("No such device or address"), missing.stderr)
        let history = try fixture.ctl.json("history", "--server", "gone")
        XCTAssertEqual(history.map { $0["status"] as? String }, ["Error"])
        XCTAssertTrue((history.first?["error"] as? String ?? "").contains("missing.img"), "\(history)")
        XCTAssertTrue(try fixture.ctl.run("history").contains("missing.img"))
        XCTAssertTrue(
            eventually(timeout: 5) {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("missing.img")
            })

        let unknown = try runCommand(["mkdir", mount.path("prod/nosuch/now")], timeout: 20)
        XCTAssertTrue(unknown.stderr.contains("No such file or directory"), unknown.stderr)
        let stranger = try runCommand(
            [
                "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "mkdir",
                mount.path("prod/web/now"),
            ], timeout: 20)
        XCTAssertTrue(stranger.stderr.contains("Permission denied"), stranger.stderr)
        // The failed attempt shows as a folder whose point.json says why; once it is removed
        // and the disk is there, the same name works.
        let shown = try mustRun(["cat", mount.path("prod/gone/now/point.json")], timeout: 10)
        XCTAssertTrue(shown.contains("missing.img"), shown)
        try mustRun(["rmdir", mount.path("prod/gone/now")], timeout: 10)
        try mustRun(["cp", fixture.disk.path, fixture.scratch.file("missing.img")])
        try mustRun(["mkdir", mount.path("prod/gone/now")], timeout: 20)
        XCTAssertTrue(
            try eventually(timeout: 30) {
                try fixture.ctl.json("points", "gone").contains {
                    $0["name"] as? String == "now" && $0["status"] as? String == "Active"
                }
            })
    }
}
