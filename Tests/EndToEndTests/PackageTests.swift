import Foundation
import Glibc
import TestSupport
import XCTest

/// What `make install` and `make deb` produce, used as an administrator would: the files in
/// place, the man pages rendering, the completions loading, and the Debian package
/// installing, working (backup, mount, unmount) and purging without a trace. `make test`
/// builds the release binaries and the package before the tests run.
final class PackageTests: XCTestCase {
    let top = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    private func requireRelease() throws {
        guard FileManager.default.isExecutableFile(atPath: "\(top)/.build-static/release/vaultctl") else {
            throw XCTSkip("no release build in .build-static: run `make release` (make test does)")
        }
    }

    func testMakeInstallPutsEveryFileInPlaceAndUninstallRemovesExactlyThose() throws {
        try requireRelease()
        let scratch = Scratch("install")
        let destdir = scratch.file("root")
        let env = ["DESTDIR": destdir, "PREFIX": "/usr/local"]
        try mustRun(["\(top)/scripts/install.sh", "install"], environment: env, timeout: 120)
        let listed = try mustRun(["\(top)/scripts/install.sh", "list"], environment: env).split(separator: "\n").map(
            String.init)
        for expected in [
            "/usr/local/bin/vaultctl", "/usr/local/bin/vaultfs", "/usr/local/bin/vaultfs-attach", "/sbin/mount.vaultfs",
            "/usr/local/lib/systemd/system/vaultfs@.service",
            "/usr/local/lib/systemd/system/vaultctl-scheduler.service",
            "/usr/local/lib/systemd/system/vaultctl-scheduler.timer",
            "/usr/local/lib/systemd/system/vaultctl-web.service", "/usr/local/share/man/man8/vaultctl.8.gz",
            "/usr/local/share/man/man8/vaultctl.serve.8.gz",
            "/usr/local/share/man/man8/vaultctl.files.get.8.gz", "/usr/local/share/man/man8/vaultfs.8.gz",
            "/usr/local/share/man/man8/mount.vaultfs.8.gz", "/usr/local/share/man/man8/vaultfs-attach.8.gz",
            "/usr/local/share/bash-completion/completions/vaultctl",
        ] {
            XCTAssertTrue(listed.contains(expected), expected)
        }
        for path in listed { XCTAssertTrue(FileManager.default.fileExists(atPath: destdir + path), path) }
        // The binaries run without a Swift toolchain: nothing of Swift's is linked dynamically.
        let libraries =
            try mustRun(["ldd", "\(destdir)/usr/local/bin/vaultctl"])
            + mustRun(["ldd", "\(destdir)/usr/local/bin/vaultfs"])
        XCTAssertFalse(libraries.contains("libswift") || libraries.contains("libFoundation"), libraries)
        XCTAssertEqual(try mustRun(["\(destdir)/usr/local/bin/vaultctl", "--version"]), "vaultctl 0.1.0\n")
        // Every man page renders without a warning.
        for page in listed where page.hasSuffix(".8.gz") {
            let result = try runCommand(["man", "--warnings", "-l", destdir + page], environment: ["MANWIDTH": "80"])
            XCTAssertEqual(result.status, 0, page)
            XCTAssertEqual(result.stderr, "", page)
            XCTAssertTrue(result.stdout.contains("NAME") || result.stdout.contains("N\u{8}NA"), page)
        }
        // The units run the installed binaries.
        XCTAssertTrue(
            try String(contentsOfFile: "\(destdir)/usr/local/lib/systemd/system/vaultfs@.service", encoding: .utf8)
                .contains("ExecStart=/usr/local/bin/vaultfs "))
        XCTAssertTrue(
            try String(
                contentsOfFile: "\(destdir)/usr/local/lib/systemd/system/vaultctl-scheduler.service", encoding: .utf8
            ).contains("ExecStart=/usr/local/bin/vaultctl schedule run --once\n"))
        XCTAssertTrue(
            try String(contentsOfFile: "\(destdir)/usr/local/lib/systemd/system/vaultctl-web.service", encoding: .utf8)
                .contains("ExecStart=/usr/local/bin/vaultctl serve $SERVE_OPTIONS\n"))
        // Each completion loads in its shell (zsh and fish where installed).
        let bash = "\(destdir)/usr/local/share/bash-completion/completions/vaultctl"
        XCTAssertTrue(try mustRun(["bash", "-c", "source \"$0\" && complete -p vaultctl", bash]).contains("vaultctl"))
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/zsh") {
            try mustRun([
                "zsh", "-c", "autoload -U compinit && compinit -u && source \"$0\"",
                "\(destdir)/usr/local/share/zsh/vendor-completions/_vaultctl",
            ])
        }
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/fish") {
            try mustRun([
                "fish", "-c", "source $argv[1]", "\(destdir)/usr/local/share/fish/vendor_completions.d/vaultctl.fish",
            ])
        }
        // Uninstall removes exactly what install put there.
        try mustRun(["\(top)/scripts/install.sh", "uninstall"], environment: env)
        XCTAssertEqual(try mustRun(["find", destdir, "-type", "f"]), "")
    }

    func testDebianPackageInstallsWorksAndPurgesWithoutATrace() throws {
        try requireRelease()
        let debs = try FileManager.default.contentsOfDirectory(atPath: top).filter {
            $0.hasPrefix("vaultfs_") && $0.hasSuffix(".deb")
        }
        guard let deb = debs.sorted().last else { throw XCTSkip("no vaultfs_*.deb: run `make deb` (make test does)") }
        let status = try runCommand(["dpkg-query", "-W", "-f=${Status}", "vaultfs"])
        guard !status.stdout.contains("installed") else { throw XCTSkip("a vaultfs package is already installed here") }
        defer {
            _ = try? runCommand(
                ["apt-get", "purge", "-y", "-q", "vaultfs"], environment: ["DEBIAN_FRONTEND": "noninteractive"],
                timeout: 300)
        }
        try mustRun(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "\(top)/\(deb)"],
            environment: ["DEBIAN_FRONTEND": "noninteractive"], timeout: 300)
        let files = try mustRun(["dpkg", "-L", "vaultfs"]).split(separator: "\n").map(String.init)
            .filter { path in
                var st = stat()
                return lstat(path, &st) == 0 && st.st_mode & S_IFMT != S_IFDIR
            }
        XCTAssertTrue(files.contains("/usr/bin/vaultctl"))
        // Opened at run time for S3 repositories: not linked, so the package names it.
        XCTAssertFalse(try mustRun(["ldd", "/usr/bin/vaultctl", "/usr/bin/vaultfs"]).contains("libcurl"))
        XCTAssertTrue(try mustRun(["dpkg-query", "-W", "-f=${Depends}", "vaultfs"]).contains("libcurl4 (>= 7.75.0)"))
        XCTAssertEqual(try mustRun(["/usr/bin/vaultctl", "--version"]), "vaultctl 0.1.0\n")
        XCTAssertTrue(try mustRun(["man", "-w", "vaultctl"]).hasSuffix("vaultctl.8.gz\n"))

        // A backup, a mount through the installed binaries, and an unmount.
        let scratch = Scratch("deb")
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "16M", files: ["etc/hostname": Array("deb\n".utf8)])
        let env = ["VAULT_REPO": scratch.file("repo")]
        try mustRun(["/usr/bin/vaultctl", "init", scratch.file("repo")], environment: env)
        try mustRun(["/usr/bin/vaultctl", "server", "add", "web", "--disk", "root=\(disk.path)"], environment: env)
        try mustRun(["/usr/bin/vaultctl", "backup", "web", "--name", "one"], environment: env)
        let mnt = scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        defer { _ = try? runCommand(["fusermount3", "-uz", mnt], timeout: 10) }
        try mustRun(["mount", "-t", "vaultfs", scratch.file("repo"), mnt], timeout: 30)
        XCTAssertEqual(try mustRun(["cat", "\(mnt)/default/web/one/files/root/etc/hostname"], timeout: 10), "deb\n")
        try mustRun(["cmp", "\(mnt)/default/web/one/root.img", disk.path], timeout: 60)
        try mustRun(["umount", mnt], timeout: 10)
        XCTAssertFalse(MountedRepository.isMounted(mnt))

        try mustRun(
            ["apt-get", "purge", "-y", "-q", "vaultfs"], environment: ["DEBIAN_FRONTEND": "noninteractive"],
            timeout: 300)
        for path in files { XCTAssertFalse(FileManager.default.fileExists(atPath: path), "\(path) is left behind") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/etc/vaultfs"), "/etc/vaultfs is left behind")
    }
}
