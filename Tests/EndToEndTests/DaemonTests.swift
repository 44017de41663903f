import Foundation
import TestSupport
import XCTest

/// How the daemon starts, what it accepts and how it stops.
final class DaemonTests: XCTestCase {
    func testUnknownOptionIsRefusedWithOneLine() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mnt = fixture.scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        for (options, message) in [
            ("bogus", "unknown mount option 'bogus'"), ("cache_size=lots", "bad cache_size"),
            ("vault=nosuch", "no vault named 'nosuch'"),
            ("cache_disk_size=1G", "cache_disk_size= needs cache_dir="),
            ("cache_dir=\(fixture.scratch.file("cache")),cache_disk_size=1", "bad cache_disk_size"),
            ("cache_dir=\(fixture.scratch.file("cache"))", "cache_dir= is for s3:// repositories"),
        ] {
            let result = try runCommand(
                [productPath("vaultfs"), fixture.ctl.repository, mnt, "-f", "-o", options], timeout: 20)
            XCTAssertEqual(result.status, 1, options)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertTrue(result.stderr.contains(message), result.stderr)
            XCTAssertFalse(MountedRepository.isMounted(mnt))
        }
        let missing = try runCommand(
            [productPath("vaultfs"), fixture.ctl.repository, fixture.scratch.file("nope")], timeout: 20)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("does not exist; make it first (mkdir "), missing.stderr)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1, missing.stderr)
        let notRepo = try runCommand([productPath("vaultfs"), fixture.scratch.path, mnt], timeout: 20)
        XCTAssertEqual(notRepo.status, 1)
        XCTAssertTrue(notRepo.stderr.contains("not a vaultfs repository"), notRepo.stderr)
    }

    func testVaultOptionShowsOneVaultAtTheRoot() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mount = try fixture.mount(["vault=prod", "cache_size=64M", "fsname=backups-prod"])
        defer { mount.unmount() }
        XCTAssertTrue(
            try String(contentsOfFile: "/proc/mounts", encoding: .utf8).contains(
                "backups-prod \(mount.mountpoint) fuse.vaultfs"))
        let listing = try mustRun(["ls", "-a", mount.mountpoint], timeout: 10).split(separator: "\n").map(String.init)
        XCTAssertEqual(Set(listing), [".", "..", ".by-id", "policy.json", "web"])
        try mustRun(["cmp", mount.path("web/latest/root.img"), fixture.asItWas[fixture.names[0]]!], timeout: 60)
    }

    func testOnlyTheMountingUserHasAccessUnlessAllowOther() throws {
        let fixture = try MountFixture(policyPoints: 1)
        chmod(fixture.scratch.path, 0o755)
        let asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ls"]
        do {
            let mount = try fixture.mount()
            defer { mount.unmount() }
            let result = try runCommand(asNobody + [mount.path("prod")], timeout: 10)
            XCTAssertNotEqual(result.status, 0)
            XCTAssertTrue(result.stderr.contains("Permission denied"), result.stderr)
        }
        let mount = try fixture.mount(["allow_other"])
        defer { mount.unmount() }
        let listing = try mustRun(asNobody + [mount.path("prod/web")], timeout: 10)
        XCTAssertTrue(listing.contains(fixture.names[0]))
        let write = try runCommand(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "mkdir", mount.path("prod/web/x")],
            timeout: 10)
        XCTAssertTrue(write.stderr.contains("Permission denied"), write.stderr)
    }

    /// A background mount that libfuse refuses says why: what libfuse or fusermount3 printed
    /// in the daemon reaches the command's stderr, above its own line.
    func testADetachedMountThatFailsSaysWhy() throws {
        let scratch = Scratch("detach-fail")
        chmod(scratch.path, 0o755)
        let ctl = Vaultctl(repository: scratch.file("repo"))
        try ctl.run("init", ctl.repository, "--group", "nogroup")
        let mnt = scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        defer { _ = try? runCommand(["fusermount3", "-uz", mnt], timeout: 10) }
        // Neither /dev/fuse (0600 here) nor the mount point (root's) is this user's.
        let result = try runCommand(
            [
                "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", productPath("vaultfs"), ctl.repository,
                mnt,
            ], timeout: 60)
        XCTAssertEqual(result.status, 1, result.stderr)
        let lines = result.stderr.split(separator: "\n")
        XCTAssertGreaterThanOrEqual(lines.count, 2, result.stderr)
        XCTAssertTrue(lines.last?.contains("cannot mount at \(mnt)") == true, result.stderr)
        XCTAssertTrue(lines.dropLast().contains { $0.contains("fuse") && !$0.hasPrefix("vaultfs:") }, result.stderr)
        XCTAssertFalse(MountedRepository.isMounted(mnt))
    }

    func testDetachedDaemonReturnsOnceMountedAndStopsOnUnmount() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mnt = fixture.scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        defer { _ = try? runCommand(["fusermount3", "-uz", mnt], timeout: 10) }
        // Run the way a script would, capturing its output through a pipe: the daemon must
        // not keep the pipe open, or the caller would wait for the life of the mount.
        let captured = try mustRun(
            [
                "sh", "-c", "out=$(\"$0\" \"$1\" \"$2\"); echo \"[$out]\"", productPath("vaultfs"),
                fixture.ctl.repository, mnt,
            ], timeout: 30)
        XCTAssertEqual(captured, "[]\n")
        XCTAssertTrue(MountedRepository.isMounted(mnt))
        try mustRun(["cmp", "\(mnt)/prod/web/latest/root.img", fixture.asItWas[fixture.names[0]]!], timeout: 60)
        try mustRun(["fusermount3", "-u", mnt], timeout: 10)
        XCTAssertTrue(
            eventually(timeout: 10) {
                ((try? runCommand(["pgrep", "-f", "vaultfs \(fixture.ctl.repository) \(mnt)"], timeout: 5))?.status ?? 0)
                    != 0
            })
    }

    func testSigtermUnmountsCleanly() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mnt = fixture.scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productPath("vaultfs"))
        process.arguments = [fixture.ctl.repository, mnt, "-f"]
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            _ = try? runCommand(["fusermount3", "-uz", mnt], timeout: 10)
        }
        XCTAssertTrue(eventually(timeout: 20) { MountedRepository.isMounted(mnt) })
        kill(process.processIdentifier, SIGTERM)
        XCTAssertTrue(eventually(timeout: 10) { !process.isRunning })
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertFalse(MountedRepository.isMounted(mnt))
    }
}
