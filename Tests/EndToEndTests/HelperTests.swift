import Foundation
import TestSupport
import XCTest

/// The helpers in mount-helpers/, with the real vaultfs where they use it.
final class HelperTests: XCTestCase {
    let helpers = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("mount-helpers").path

    func testHelperScriptSuitePasses() throws {
        let result = try runCommand(["\(helpers)/tests/test-helpers.sh"], timeout: 300)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains(" 0 failed"), result.stdout)
    }

    func testMountHelperMountsTheRealRepository() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mnt = fixture.scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        defer { _ = try? runCommand(["fusermount3", "-uz", mnt], timeout: 10) }
        try mustRun(
            ["\(helpers)/mount.vaultfs", fixture.ctl.repository, mnt, "-o", "vault=prod,nofail,_netdev,defaults"],
            environment: ["VAULTFS_BIN": productPath("vaultfs")], timeout: 30)
        XCTAssertTrue(MountedRepository.isMounted(mnt))
        try mustRun(["cmp", "\(mnt)/web/latest/root.img", fixture.asItWas[fixture.names[0]]!], timeout: 60)
        try mustRun(["fusermount3", "-u", mnt], timeout: 10)
    }

    /// Runs `body` with mount.vaultfs installed as /sbin/mount.vaultfs (removed after), a
    /// repository with one point, an empty mount point (unmounted after, in every outcome)
    /// and the environment that makes the helper run this build's vaultfs.
    private func withInstalledHelper(_ body: (MountFixture, String, [String: String]) throws -> Void) throws {
        let installed = "/sbin/mount.vaultfs"
        guard !FileManager.default.fileExists(atPath: installed) else {
            throw XCTSkip("\(installed) is already installed")
        }
        try FileManager.default.createSymbolicLink(atPath: installed, withDestinationPath: "\(helpers)/mount.vaultfs")
        defer { unlink(installed) }
        let fixture = try MountFixture(policyPoints: 1)
        let mnt = fixture.scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        defer { _ = try? runCommand(["fusermount3", "-uz", mnt], timeout: 10) }
        let env = ["VAULTFS_BIN": productPath("vaultfs")]
        try body(fixture, mnt, env)
    }

    func testMountTypeVaultfsAndAnFstabLine() throws {
        try withInstalledHelper { fixture, mnt, env in
            try mustRun(
                ["mount", "-t", "vaultfs", fixture.ctl.repository, mnt, "-o", "vault=prod"], environment: env,
                timeout: 30)
            try mustRun(["test", "-f", "\(mnt)/web/latest/root.img"], timeout: 10)
            try mustRun(["umount", mnt], timeout: 10)
            XCTAssertFalse(MountedRepository.isMounted(mnt))

            let fstab = fixture.scratch.file("fstab")
            try "\(fixture.ctl.repository) \(mnt) vaultfs vault=prod,nofail,_netdev 0 0\n".write(
                toFile: fstab, atomically: true, encoding: .utf8)
            try mustRun(["mount", "--fstab", fstab, mnt], environment: env, timeout: 30)
            try mustRun(["cmp", "\(mnt)/web/latest/root.img", fixture.asItWas[fixture.names[0]]!], timeout: 60)
            try mustRun(["umount", mnt], timeout: 10)
        }
    }

    func testMountingTwiceMountsOnceAndRoShowsInProcMounts() throws {
        try withInstalledHelper { fixture, mnt, env in
            let fstab = fixture.scratch.file("fstab")
            try "\(fixture.ctl.repository) \(mnt) vaultfs vault=prod,ro 0 0\n".write(
                toFile: fstab, atomically: true, encoding: .utf8)
            // mount -a twice: the second sees the first (the sources match) and mounts nothing.
            try mustRun(["mount", "--fstab", fstab, "-a"], environment: env, timeout: 30)
            try mustRun(["mount", "--fstab", fstab, "-a"], environment: env, timeout: 30)
            let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8).split(separator: "\n")
                .filter { $0.split(separator: " ")[4] == mnt }
            XCTAssertEqual(mounts.count, 1, mounts.joined(separator: "\n"))
            let line = try mustRun(["findmnt", "-n", "-o", "SOURCE,OPTIONS", "--mountpoint", mnt])
            XCTAssertTrue(line.hasPrefix(fixture.ctl.repository + " "), line)
            XCTAssertTrue(line.contains("ro,") || line.contains(" ro"), line)
            // ro: mkdir of a point is refused by the kernel (asked through a bounded command).
            let made = try runCommand(["mkdir", "\(mnt)/web/now"], timeout: 10)
            XCTAssertNotEqual(made.status, 0)
            XCTAssertTrue(made.stderr.contains("Read-only file system"), made.stderr)
            // A second daemon on the same directory is refused with one line.
            let again = try runCommand([productPath("vaultfs"), fixture.ctl.repository, mnt], timeout: 30)
            XCTAssertEqual(again.status, 1)
            XCTAssertTrue(again.stderr.contains("already a mount point"), again.stderr)
            XCTAssertEqual(again.stderr.split(separator: "\n").count, 1, again.stderr)
            try mustRun(["umount", mnt], timeout: 10)
        }
    }

    func testAttachCopiesASingleFileOutOfAMountedImage() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let dir = fixture.scratch.file("attached")
        defer { _ = try? runCommand(["\(helpers)/vaultfs-attach", "--detach", dir], timeout: 30) }
        try mustRun(["\(helpers)/vaultfs-attach", mount.path("prod/web/latest/root.img"), dir], timeout: 30)
        let copied = fixture.scratch.file("slot-0.bin")
        try mustRun(["cp", "\(dir)/data/slot-0.bin", copied], timeout: 30)
        XCTAssertEqual(try readBytes(copied), pseudoRandomBytes(120_000, seed: 50))
        try mustRun(["\(helpers)/vaultfs-attach", "--detach", dir], timeout: 30)
        XCTAssertEqual(try mustRun(["losetup", "-j", mount.path("prod/web/latest/root.img")]), "")
    }
}
