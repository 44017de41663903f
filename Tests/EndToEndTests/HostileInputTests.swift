import Foundation
import Glibc
import TestSupport
import XCTest

/// Input that other people control never becomes privilege: a repository path or mount option
/// cannot add mount options, a command written into a repository never runs, and a mount
/// point that would make the daemon wait on itself is refused. Real mounts, a real setuid
/// binary and device node in a backed-up ext4 disk, and a real non-root user.
final class HostileInputTests: XCTestCase {
    /// A repository with one point of `web`, whose ext4 disk holds a setuid-root copy of `id`
    /// and a world-writable device node (1,5, /dev/zero's numbers), as a hostile guest's could.
    private final class Setup {
        let scratch = Scratch("hostile")
        let ctl: Vaultctl
        let user: TestUser
        /// This test's host configuration (hooks), never the machine's /etc/vaultfs.
        var configDirectory: String { scratch.file("etc") }

        init() throws {
            chmod(scratch.path, 0o755)
            user = try TestUser()
            let source = scratch.file("src")
            try FileManager.default.createDirectory(atPath: "\(source)/bin", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: "\(source)/dev", withIntermediateDirectories: true)
            try mustRun(["cp", "/usr/bin/id", "\(source)/bin/suid-id"])
            XCTAssertEqual(chmod("\(source)/bin/suid-id", 0o4755), 0)
            try mustRun(["cp", "/usr/bin/cat", "\(source)/bin/suid-cat"])
            XCTAssertEqual(chmod("\(source)/bin/suid-cat", 0o4755), 0)
            try mustRun(["mknod", "-m", "666", "\(source)/dev/zero-node", "c", "1", "5"])
            try mustRun(["mkfs.ext4", "-q", "-F", "-d", source, scratch.file("root.img"), "16M"])
            ctl = Vaultctl(repository: scratch.file("repo"), environment: ["VAULT_CONFIG_DIR": scratch.file("etc")])
            try ctl.run("init", ctl.repository, "--chunk-size", "256K")
            try ctl.run("server", "add", "web", "--disk", "root=\(scratch.file("root.img"))")
            try ctl.run("backup", "web", "--name", "one")
        }
    }

    func testARepositoryPathOrFsnameCannotAddMountOptions() throws {
        let setup = try Setup()
        var current = setup.ctl.repository
        let hostile = ["r,suid,dev", "r,allow_other", "r\\", "r\\,suid", "r=suid", "r with spaces", "r\nnewline,dev"]
        for (index, name) in hostile.enumerated() {
            let path = setup.scratch.file(name)
            XCTAssertEqual(rename(current, path), 0, name)
            current = path
            let mount = try MountedRepository(repository: path, at: setup.scratch.file("mnt-\(index)"))
            defer { mount.unmount() }
            let view = try XCTUnwrap(mount.kernelView, name)
            XCTAssertEqual(view.source, path, name)
            XCTAssertTrue(view.flags.isSuperset(of: ["nosuid", "nodev"]), "\(name): \(view.flags)")
            XCTAssertFalse(view.options.contains("allow_other"), "\(name): \(view.options)")
            XCTAssertTrue(try mount.exists("default/web/one/root.img"), name)
        }
        // An fsname ending in a backslash does not swallow the option after it.
        let mount = try MountedRepository(
            repository: current, at: setup.scratch.file("mnt-fsname"), options: ["fsname=x\\"])
        defer { mount.unmount() }
        let view = try XCTUnwrap(mount.kernelView)
        XCTAssertEqual(view.source, "x\\")
        XCTAssertTrue(view.flags.isSuperset(of: ["nosuid", "nodev"]), "\(view.flags)")
    }

    func testASetuidBinaryAndADeviceNodeOfAGuestGiveAUserNothingUnderACommaPath() throws {
        let setup = try Setup()
        let path = setup.scratch.file("r,suid,dev")
        XCTAssertEqual(rename(setup.ctl.repository, path), 0)
        let mount = try MountedRepository(
            repository: path, at: setup.scratch.file("mnt"), options: ["allow_other", "suid", "dev"])
        defer { mount.unmount() }
        let view = try XCTUnwrap(mount.kernelView)
        XCTAssertTrue(view.flags.isSuperset(of: ["nosuid", "nodev"]), "\(view.flags)")
        let files = mount.path("default/web/one/files/root")
        let user = setup.user
        try mount.io {
            // The binary is setuid root in the mount, and runs with the user's own rights.
            var st = stat()
            XCTAssertEqual(stat("\(files)/bin/suid-id", &st), 0)
            XCTAssertEqual(st.st_mode & 0o4000, 0o4000)
            XCTAssertEqual(st.st_uid, 0)
            let ran = try user.run(["\(files)/bin/suid-id", "-u"])
            XCTAssertEqual(ran.status, 0, ran.stderr)
            XCTAssertEqual(ran.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(user.uid)")
            // A setuid-root cat cannot read what only root may.
            let shadow = try user.run(["\(files)/bin/suid-cat", "/etc/shadow"])
            XCTAssertNotEqual(shadow.status, 0)
            XCTAssertFalse(shadow.stdout.contains("root:"), shadow.stdout)
            // The device node does not open, for the user or for root.
            let opened = try user.run(["dd", "if=\(files)/dev/zero-node", "of=/dev/null", "count=1", "status=none"])
            XCTAssertNotEqual(opened.status, 0)
            XCTAssertLessThan(open("\(files)/dev/zero-node", O_RDONLY), 0)
        }
        XCTAssertTrue(mount.isRunning)
    }

    func testAMountPointInOrAroundTheRepositoryIsRefusedWithOneLine() throws {
        let setup = try Setup()
        let repository = setup.ctl.repository
        XCTAssertEqual(symlink(repository, setup.scratch.file("link-to-repo")), 0)
        let cases = [
            (repository, " is the repository"), ("\(repository)/maps", " is inside the repository"),
            (setup.scratch.path, " holds the repository"), (setup.scratch.file("link-to-repo"), " is the repository"),
        ]
        for (mountpoint, expected) in cases {
            let result = try runCommand([productPath("vaultfs"), repository, mountpoint, "-f"], timeout: 20)
            XCTAssertFalse(result.timedOut, mountpoint)
            XCTAssertNotEqual(result.status, 0, mountpoint)
            XCTAssertTrue(result.stderr.contains(expected), "\(mountpoint): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertFalse(MountedRepository.isMounted(mountpoint), mountpoint)
        }
        // The repository still works.
        XCTAssertTrue(try setup.ctl.run("verify").contains("all intact"))
    }

    func testMountingOverADeadMountNamesItAndHowToClearIt() throws {
        let setup = try Setup()
        let mount = try MountedRepository(repository: setup.ctl.repository, at: setup.scratch.file("mnt"))
        defer { mount.unmount() }
        mount.killDaemon()
        let again = try runCommand([productPath("vaultfs"), setup.ctl.repository, mount.mountpoint, "-f"], timeout: 20)
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("is a dead vaultfs mount"), again.stderr)
        XCTAssertTrue(again.stderr.contains("fusermount3 -u \(mount.mountpoint)"), again.stderr)
        try mustRun(["fusermount3", "-u", mount.mountpoint])
        let remounted = try MountedRepository(repository: setup.ctl.repository, at: mount.mountpoint)
        defer { remounted.unmount() }
        XCTAssertTrue(try remounted.exists("default/web/one/root.img"))
    }

    func testACacheLargerThanMemoryIsRefused() throws {
        let setup = try Setup()
        for (size, expected) in [("999T", "of memory"), ("99999999999999T", "bad cache_size")] {
            let result = try runCommand(
                [productPath("vaultfs"), setup.ctl.repository, setup.scratch.path, "-f", "-o", "cache_size=\(size)"],
                timeout: 20)
            XCTAssertNotEqual(result.status, 0)
            XCTAssertTrue(result.stderr.contains(expected), result.stderr)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        }
    }

    func testACommandWrittenIntoTheCatalogOrAManifestNeverRuns() throws {
        let setup = try Setup()
        let ctl = setup.ctl
        let catalog = "\(ctl.repository)/catalog.sqlite"
        let pwned = setup.scratch.file("PWNED")
        // The catalog edited as an attacker would: the old column back, with a command in it.
        try mustRun([
            "sqlite3", catalog,
            "ALTER TABLE server ADD COLUMN freezeCommand TEXT; UPDATE server SET freezeCommand = 'id > \(pwned)' WHERE name = 'web'",
        ])
        XCTAssertEqual(try ctl.attempt(["backup", "web", "--name", "edited-catalog"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pwned))
        // A disk path edited in the catalog is not read: the host reads only the disks it was given.
        let path = try mustRun(["sqlite3", catalog, "SELECT path FROM disk"]).trimmingCharacters(
            in: .whitespacesAndNewlines)
        try mustRun(["sqlite3", catalog, "UPDATE disk SET path = '/etc/shadow'"])
        let stolen = try ctl.attempt(["backup", "web", "--name", "edited-disk"])
        XCTAssertNotEqual(stolen.status, 0)
        XCTAssertTrue(stolen.stderr.contains("nothing is read") && !stolen.stderr.contains(path), stolen.stderr)
        XCTAssertTrue(try ctl.run("server", "show", "web").contains("set up with other disks: root=\(path)"))
        XCTAssertFalse(try ctl.run("points", "--json").contains("edited-disk"))
        try mustRun(["sqlite3", catalog, "UPDATE disk SET path = '\(path)'"])

        // A manifest written as an older vaultfs wrote it, naming a command, taken in by a rebuild.
        let manifest = "\(ctl.repository)/manifests/servers/web.json"
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(readBytes(manifest))) as? [String: Any])
        var server = try XCTUnwrap(object["server"] as? [String: Any])
        server["hooks"] = nil
        server["freezeCommand"] = "id > \(pwned)"
        object["server"] = server
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: manifest))
        for suffix in ["", "-wal", "-shm"] { unlink(catalog + suffix) }
        try ctl.run("repair", "--rebuild-catalog")
        let refused = try ctl.attempt(["backup", "web", "--name", "edited-manifest"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("this host has none"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pwned))
        XCTAssertTrue(try ctl.run("server", "show", "web").contains("this host has none"))

        // The host's own hooks run, and the repository keeps no command.
        let log = setup.scratch.file("hooks.log")
        try ctl.run(
            "server", "hooks", "web", "--freeze-command", "echo freeze >> \(log)", "--thaw-command",
            "echo thaw >> \(log)")
        try ctl.run("backup", "web", "--name", "host-hooks")
        XCTAssertEqual(try String(contentsOfFile: log, encoding: .utf8), "freeze\nthaw\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: pwned))
        XCTAssertFalse(try String(contentsOfFile: manifest, encoding: .utf8).contains("echo"))
        let hooksFile = "\(setup.configDirectory)/servers/web.conf"
        XCTAssertTrue(try String(contentsOfFile: hooksFile, encoding: .utf8).contains("freeze = echo freeze"))

        // A hooks file another user could write is refused, and nothing runs.
        XCTAssertEqual(chmod(hooksFile, 0o666), 0)
        let unsafe = try ctl.attempt(["backup", "web", "--name", "unsafe-hooks"])
        XCTAssertNotEqual(unsafe.status, 0)
        XCTAssertTrue(unsafe.stderr.contains("may be written by its group or others"), unsafe.stderr)
        XCTAssertEqual(try String(contentsOfFile: log, encoding: .utf8), "freeze\nthaw\n")
    }

    /// Names a guest may write that are not UTF-8 or hold control characters come back as
    /// their bytes through the mount, `files ls` and the `files get` tar; entries no name may
    /// be (a `/`, a NUL, a second `.` or `..`, as only a hostile guest or damage makes) are
    /// never shown, and are reported.
    func testHostileNamesComeBackAsTheirBytesAndImpossibleOnesAreReported() throws {
        let scratch = Scratch("names")
        chmod(scratch.path, 0o755)
        let source = scratch.file("src")
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let odd: [[UInt8]] = [
            [0xFF, 0xFE], Array("line\nbreak".utf8), Array("\u{1B}[2Jclear".utf8), Array("plain".utf8),
        ]
        let planted = ["SLASHNAM", "NULLNAME", "DOTENTRY", "DOTDOTXX"]
        for (index, name) in (odd + planted.map { Array($0.utf8) }).enumerated() {
            try writeFile(source, name, Array("file \(index)\n".utf8))
        }
        // A folder whose name would forge a line on the terminal, holding one impossible entry.
        let forging = Array("sub\nforged: line".utf8)
        XCTAssertEqual(mkdir(source + "/" + String(decoding: forging, as: UTF8.self), 0o755), 0)
        try writeFile(source + "/" + String(decoding: forging, as: UTF8.self), Array("NESTEDXX".utf8), [])
        let image = scratch.file("root.img")
        // Without metadata checksums, so the planted names below are all that is damaged.
        try mustRun(["mkfs.ext4", "-q", "-F", "-O", "^metadata_csum", "-d", source, image, "8M"])
        var bytes = try readBytes(image)
        for (marker, name) in zip(
            planted + ["NESTEDXX"],
            [
                Array("sl/shnam".utf8), Array("nul\u{0}name".utf8), [0x2E], [0x2E, 0x2E],
                Array("ne/ted/x".utf8),
            ])
        {
            let at = try XCTUnwrap(find(Array(marker.utf8), in: bytes), marker)
            bytes[at - 2] = UInt8(name.count) // the entry's name length
            bytes.replaceSubrange(at..<(at + name.count), with: name)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: image))
        let ctl = Vaultctl(repository: scratch.file("repo"))
        try ctl.run("init", ctl.repository, "--chunk-size", "256K")
        try ctl.run("server", "add", "web", "--disk", "root=\(image)")
        try ctl.run("backup", "web", "--name", "one")

        // The mount: the names as they were, the impossible entries not there.
        let mount = try MountedRepository(repository: ctl.repository, at: scratch.file("mnt"))
        defer { mount.unmount() }
        let root = mount.path("default/web/one/files/root")
        try mount.io {
            XCTAssertEqual(Set(try self.names(in: root)), Set(odd + [Array("lost+found".utf8), forging]))
            for (index, name) in odd.enumerated() {
                XCTAssertEqual(try self.readFile(root, name), Array("file \(index)\n".utf8))
            }
        }

        // files ls into a pipe: each name's bytes; with --json: the exact bytes in base64,
        // and the impossible entries marked, with a count on stderr.
        let listed = try runCommand(
            [productPath("vaultctl"), "files", "ls", "web/one"], environment: ["VAULT_REPO": ctl.repository])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertTrue(listed.stderr.contains("4 entries with names no file may have"), listed.stderr)
        let raw = try rawOutput(
            [productPath("vaultctl"), "files", "ls", "web/one"], environment: ["VAULT_REPO": ctl.repository])
        XCTAssertNotNil(find([0x20, 0xFF, 0xFE, 0x0A], in: raw), "the name's bytes as they are")
        let json = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(ctl.run("files", "ls", "web/one", "--json").utf8))
                as? [[String: Any]])
        XCTAssertTrue(
            json.contains { $0["nameBytes"] as? String == Data([0xFF, 0xFE]).base64EncodedString() }, "\(json)")
        XCTAssertTrue(json.contains { $0["name"] as? String == "line\nbreak" && $0["nameBytes"] == nil })
        XCTAssertEqual(json.filter { $0["unusable"] as? Bool == true }.count, 4, "\(json)")

        // files get: the tar holds each name's bytes; the impossible entries are named on
        // stderr and make the exit status 1, and the rest is written.
        let tar = scratch.file("root.tar")
        let got = try ctl.attempt(["files", "get", "web/one", "/", "-o", tar])
        XCTAssertEqual(got.status, 1, got.stderr)
        XCTAssertTrue(got.stderr.contains("4 entries with names no file may have"), got.stderr)
        // Names from the disk reach the terminal quoted: the folder's newline forges no line.
        XCTAssertTrue(got.stderr.contains("sub\\nforged: line'"), got.stderr)
        XCTAssertFalse(got.stderr.split(separator: "\n").contains { $0.hasPrefix("forged") }, got.stderr)
        let unpacked = scratch.file("unpacked")
        try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true)
        try mustRun(["tar", "-xf", tar, "-C", unpacked])
        let top = try XCTUnwrap(try names(in: unpacked).first)
        let folder = unpacked + "/" + String(decoding: top, as: UTF8.self)
        XCTAssertEqual(Set(try names(in: folder)), Set(odd + [Array("lost+found".utf8), forging]))
        for (index, name) in odd.enumerated() {
            XCTAssertEqual(try readFile(folder, name), Array("file \(index)\n".utf8))
        }
        XCTAssertTrue(mount.isRunning)
    }

    /// A file named by bytes in `folder`, created with `content`.
    private func writeFile(_ folder: String, _ name: [UInt8], _ content: [UInt8]) throws {
        let fd = (Array(folder.utf8) + [0x2F] + name + [0]).withUnsafeBufferPointer { path in
            path.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_EXCL, 0o644) }
        }
        guard fd >= 0 else { throw TestError.failed("cannot create \(name) in \(folder)") }
        defer { close(fd) }
        XCTAssertEqual(content.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }, content.count)
    }

    /// The bytes of a file named by bytes in `folder`.
    private func readFile(_ folder: String, _ name: [UInt8]) throws -> [UInt8] {
        let fd = (Array(folder.utf8) + [0x2F] + name + [0]).withUnsafeBufferPointer { path in
            path.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_RDONLY) }
        }
        guard fd >= 0 else { throw TestError.failed("cannot open \(name) in \(folder): \(errno)") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(fd, &buffer, buffer.count)
        return Array(buffer.prefix(max(0, count)))
    }

    /// The names in a folder as the kernel gives them, but `.` and `..`.
    private func names(in folder: String) throws -> [[UInt8]] {
        guard let dir = opendir(folder) else { throw TestError.failed("cannot list \(folder)") }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
        }
        return names
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        return (0...(haystack.count - needle.count)).first { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    /// A command's standard output as bytes (not decoded as UTF-8).
    private func rawOutput(_ arguments: [String], environment: [String: String]) throws -> [UInt8] {
        let scratch = Scratch("raw")
        let file = scratch.file("out")
        let result = try runCommand(["/bin/sh", "-c", "\"$0\" \"$@\" > \(file)"] + arguments, environment: environment)
        XCTAssertEqual(result.status, 0, result.stderr)
        return try readBytes(file)
    }
}
