import Foundation
import Glibc
import TestSupport
import VaultCore
import XCTest

/// Files inside points, as a user restores them: real ext4 disks (whole and in MBR and GPT
/// partitions) backed up, mounted with the real daemon, and read by a real non-root user.
final class FilesInsideTests: XCTestCase {
    /// A repository holding one point of a server with an ext4 disk `root` made from a
    /// `SourceTree`, and optionally more disks. The scratch folder is open to other users
    /// (a test user must reach the mount point).
    private final class Setup {
        let scratch = Scratch("files")
        let ctl: Vaultctl
        let tree: SourceTree
        let user: TestUser

        init(extraDisks: [String: String] = [:]) throws {
            chmod(scratch.path, 0o755)
            user = try TestUser()
            tree = try SourceTree.make(at: scratch.file("src"), otherUID: user.uid)
            try tree.ext4(at: scratch.file("root.img"), size: "64M")
            // ext4 keeps nanoseconds (shifted left by two, beside the epoch bits).
            try mustRun([
                "debugfs", "-w", "-R", "set_inode_field /etc/hostname mtime_extra \(123_456_789 << 2)",
                scratch.file("root.img"),
            ])
            ctl = Vaultctl(repository: scratch.file("repo"))
            try ctl.run("init", ctl.repository, "--chunk-size", "256K")
            var disks = ["--disk", "root=\(scratch.file("root.img"))"]
            for (name, path) in extraDisks.sorted(by: { $0.key < $1.key }) { disks += ["--disk", "\(name)=\(path)"] }
            _ = try mustRun(
                [productPath("vaultctl"), "server", "add", "web"] + disks, environment: ["VAULT_REPO": ctl.repository])
            try ctl.run("backup", "web", "--name", "one")
        }

        func mount(_ options: [String] = ["allow_other"], as user: TestUser? = nil) throws -> MountedRepository {
            try MountedRepository(
                repository: ctl.repository, at: scratch.file(user == nil ? "mnt" : "mnt-user"), options: options,
                as: user)
        }

        func source(_ relative: String) -> String { "\(tree.path)/\(relative)" }
    }

    func testAnotherUserReadsFilesAsTheirOriginalModesAllow() throws {
        let setup = try Setup()
        let mount = try setup.mount()
        defer { mount.unmount() }
        let files = mount.path("default/web/one/files/root")
        let user = setup.user
        let copies = setup.scratch.file("copies")
        try FileManager.default.createDirectory(atPath: copies, withIntermediateDirectories: true)
        chown(copies, user.uid, user.gid)
        try mount.io {
            // World-readable and user-owned files read byte for byte; root's own do not.
            for name in ["etc/hostname", "etc/nginx/nginx.conf", "var/lib/data/large.bin", "home/user/private.key"] {
                let copy = "\(copies)/\(name.replacingOccurrences(of: "/", with: "_"))"
                let result = try user.run(["/bin/sh", "-c", "cat \"$0\" > \"$1\"", "\(files)/\(name)", copy])
                XCTAssertEqual(result.status, 0, "\(name): \(result.stderr)")
                XCTAssertEqual(try readBytes(copy), try readBytes(setup.source(name)), name)
            }
            let denied = try user.run(["cat", "\(files)/etc/shadow"])
            XCTAssertNotEqual(denied.status, 0)
            XCTAssertTrue(denied.stderr.contains("Permission denied"), denied.stderr)
        }
        XCTAssertTrue(mount.isRunning)
    }

    func testOwnersModesTimesLinksSparseFilesAndXattrsAreTheOriginals() throws {
        let setup = try Setup()
        let mount = try setup.mount()
        defer { mount.unmount() }
        let files = mount.path("default/web/one/files/root")
        try mount.io {
            for name in [
                "etc", "etc/hostname", "etc/shadow", "etc/nginx/current", "home/user", "home/user/private.key",
                "var/lib/data/large.bin", "var/lib/data/sparse.img", "srv/fifo", "srv/null", "var/lib/data/long-link",
            ] {
                var a = stat()
                var b = stat()
                XCTAssertEqual(lstat("\(files)/\(name)", &a), 0, name)
                XCTAssertEqual(lstat(setup.source(name), &b), 0, name)
                XCTAssertEqual(a.st_mode, b.st_mode, name)
                XCTAssertEqual(a.st_uid, b.st_uid, name)
                XCTAssertEqual(a.st_gid, b.st_gid, name)
                if a.st_mode & S_IFMT != S_IFDIR { XCTAssertEqual(a.st_size, b.st_size, name) }
                XCTAssertEqual(a.st_mtim.tv_sec, b.st_mtim.tv_sec, name)
                if a.st_mode & S_IFMT == S_IFCHR { XCTAssertEqual(a.st_rdev, b.st_rdev, name) }
            }
            // Nanoseconds, which mkfs.ext4 -d drops but the setup wrote with debugfs.
            var precise = stat()
            lstat("\(files)/etc/hostname", &precise)
            XCTAssertEqual(precise.st_mtim.tv_nsec, 123_456_789)
            XCTAssertEqual(
                try FileManager.default.destinationOfSymbolicLink(atPath: "\(files)/etc/nginx/current"), "nginx.conf")
            XCTAssertEqual(
                try FileManager.default.destinationOfSymbolicLink(atPath: "\(files)/var/lib/data/long-link"),
                try FileManager.default.destinationOfSymbolicLink(atPath: setup.source("var/lib/data/long-link")))
            // Hard links share one inode number and count two links.
            var one = stat()
            var two = stat()
            lstat("\(files)/var/lib/data/large.bin", &one)
            lstat("\(files)/var/lib/data/large.hardlink", &two)
            XCTAssertEqual(one.st_ino, two.st_ino)
            XCTAssertEqual(one.st_nlink, 2)
            // The sparse file: its holes are holes (SEEK_DATA/SEEK_HOLE), its bytes the same.
            let sparse = "\(files)/var/lib/data/sparse.img"
            let fd = open(sparse, O_RDONLY)
            defer { close(fd) }
            XCTAssertEqual(lseek(fd, 0, 3), 0)
            XCTAssertEqual(lseek(fd, 0, 4), 4096)
            XCTAssertEqual(lseek(fd, 4096, 3), 1500 * 4096)
            XCTAssertEqual(try readBytes(sparse), try readBytes(setup.source("var/lib/data/sparse.img")))
            // Extended attributes and the POSIX ACL, as getfattr and getfacl show them.
            XCTAssertEqual(
                try mustRun(["getfattr", "--absolute-names", "-d", "\(files)/etc/hostname"])
                    .replacingOccurrences(of: files, with: ""),
                try mustRun(["getfattr", "--absolute-names", "-d", setup.source("etc/hostname")])
                    .replacingOccurrences(of: setup.tree.path, with: ""))
            XCTAssertEqual(
                try mustRun(["getfacl", "--omit-header", "\(files)/etc/nginx/nginx.conf"]),
                try mustRun(["getfacl", "--omit-header", setup.source("etc/nginx/nginx.conf")]))
            // The tree's own nodes say attributes are not supported, so ls stops asking for them
            // there; a listing inside still marks the file with an ACL.
            let point = try runCommand(["getfattr", "-n", "user.origin", mount.path("default/web/one")])
            XCTAssertTrue(point.stderr.contains("Operation not supported"), point.stderr)
            let listing = try mustRun(["ls", "-l", "\(files)/etc/nginx"]).split(separator: "\n")
            XCTAssertEqual(
                listing.first { $0.hasPrefix("-") && $0.hasSuffix(" nginx.conf") }?.dropFirst(10).first, "+",
                "\(listing)")
            // Nothing can be written, and the FIFO is shown but never opened through us.
            XCTAssertEqual(open("\(files)/etc/hostname", O_WRONLY), -1)
            XCTAssertEqual(errno, EROFS)
        }
    }

    func testCopyOfAFolderOutOfTheMountMatchesTheSource() throws {
        let setup = try Setup()
        let mount = try setup.mount()
        defer { mount.unmount() }
        let copy = setup.scratch.file("restored")
        try mount.io(timeout: 60) {
            try mustRun(["cp", "-a", mount.path("default/web/one/files/root/var"), copy])
            try mustRun(["diff", "-r", "--no-dereference", copy, setup.source("var")])
            // cp -a keeps the sparse file sparse: SEEK_HOLE made that possible.
            XCTAssertLessThan(allocatedBytes("\(copy)/lib/data/sparse.img"), 1 << 20)
        }
    }

    func testAFileReadableOnlyByRootOpensToTheMounterWithFilesOwnerMe() throws {
        let setup = try Setup()
        // The user runs their own mounts of a repository they own, as on a Debian system,
        // where /dev/fuse is open to all users (this machine keeps it to root).
        try mustRun(["chown", "-R", "\(setup.user.uid):\(setup.user.gid)", setup.ctl.repository])
        var device = stat()
        XCTAssertEqual(stat("/dev/fuse", &device), 0)
        chmod("/dev/fuse", 0o666)
        defer { chmod("/dev/fuse", device.st_mode & 0o7777) }
        let shadow = "default/web/one/files/root/etc/shadow"
        do {
            let plain = try setup.mount([], as: setup.user)
            defer { plain.unmount() }
            let denied = try plain.io { try setup.user.run(["cat", plain.path(shadow)]) }
            XCTAssertNotEqual(denied.status, 0, "root's file must stay closed without files_owner=me")
        }
        let owner = try setup.mount(["files_owner=me"], as: setup.user)
        defer { owner.unmount() }
        let result = try owner.io { try setup.user.run(["cat", owner.path(shadow)]) }
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(Array(result.stdout.utf8), try readBytes(setup.source("etc/shadow")))
        // Only the mounter sees this mount (no allow_other): ask as them.
        let shown = try owner.io { try setup.user.run(["stat", "-c", "%u %a", owner.path(shadow)]) }
        XCTAssertEqual(shown.stdout, "\(setup.user.uid) 600\n", shown.stderr)
    }

    func testMBRAndGPTPartitionsShowTheirFilesAndImages() throws {
        let scratch = Scratch("parts")
        let small = scratch.file("small")
        try FileManager.default.createDirectory(atPath: "\(small)/etc", withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.createFile(atPath: "\(small)/etc/motd", contents: Data("partition\n".utf8)))
        XCTAssertTrue(
            FileManager.default.createFile(atPath: "\(small)/blob", contents: Data(pseudoRandomBytes(700_000, seed: 5)))
        )
        let mbr = scratch.file("mbr.img")
        let gpt = scratch.file("gpt.img")
        // MBR: a primary partition and a logical one inside an extended partition.
        let mbrSpans = try PartitionedDisk.make(
            at: mbr, size: "64M", script: "label: dos\n,20M,L\n,,E\n,24M,L\n",
            contents: [1: small, 5: small])
        let gptSpans = try PartitionedDisk.make(
            at: gpt, size: "64M", script: "label: gpt\n,20M\n,20M\n,8M\n",
            contents: [1: small, 2: small])
        let setup = try Setup(extraDisks: ["mbr": mbr, "gpt": gpt])
        let mount = try setup.mount()
        defer { mount.unmount() }
        let point = mount.path("default/web/one")
        try mount.io(timeout: 60) {
            let shown = try FileManager.default.contentsOfDirectory(atPath: "\(point)/files").sorted()
            XCTAssertEqual(shown, ["gpt.part1", "gpt.part2", "mbr.part1", "mbr.part5", "root"])
            for volume in ["gpt.part1", "gpt.part2", "mbr.part1", "mbr.part5"] {
                XCTAssertEqual(try readBytes("\(point)/files/\(volume)/etc/motd"), Array("partition\n".utf8), volume)
                XCTAssertEqual(try readBytes("\(point)/files/\(volume)/blob"), try readBytes("\(small)/blob"), volume)
            }
            // Each partition is an image of its own, byte for byte, and a clean filesystem.
            let images = try FileManager.default.contentsOfDirectory(atPath: point).filter { $0.contains(".part") }
                .sorted()
            XCTAssertEqual(
                images, ["gpt.part1.img", "gpt.part2.img", "gpt.part3.img", "mbr.part1.img", "mbr.part5.img"])
            for (disk, spans) in [("mbr", mbrSpans), ("gpt", gptSpans)] {
                for (number, span) in spans where images.contains("\(disk).part\(number).img") {
                    let image = "\(point)/\(disk).part\(number).img"
                    let original = scratch.file("\(disk)\(number).orig")
                    try mustRun([
                        "dd", "if=\(disk == "mbr" ? mbr : gpt)", "of=\(original)", "bs=64K", "skip=\(span.offset)",
                        "count=\(span.size)", "iflag=skip_bytes,count_bytes", "status=none",
                    ])
                    XCTAssertEqual(try readBytes(image), try readBytes(original), image)
                }
            }
            try Ext4Image.check("\(point)/mbr.part5.img")
            try Ext4Image.check("\(point)/gpt.part2.img")
        }
        // point.json says what each disk holds, and why a partition is not shown.
        let json = try mount.io {
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(point)/point.json")))
        }
        let disks = (json as! [String: Any])["disks"] as! [[String: Any]]
        let gptContents = disks.first { $0["name"] as? String == "gpt" }!["contents"] as! [String: Any]
        XCTAssertEqual(gptContents["partitionTable"] as? String, "gpt")
        let volumes = gptContents["volumes"] as! [[String: Any]]
        XCTAssertEqual(volumes.map { $0["name"] as! String }, ["gpt.part1", "gpt.part2", "gpt.part3"])
        XCTAssertEqual(volumes.map { $0["shown"] as! Bool }, [true, true, false])
        XCTAssertEqual(volumes[0]["filesystem"] as? String, "ext4")
        XCTAssertEqual(volumes[2]["reason"] as? String, "no filesystem found")
        let mbrContents = disks.first { $0["name"] as? String == "mbr" }!["contents"] as! [String: Any]
        XCTAssertEqual(mbrContents["partitionTable"] as? String, "mbr")
    }

    func testFilesGetWritesAFolderAsTarWithOwnersModesTimesAndXattrs() throws {
        let setup = try Setup()
        let tarFile = setup.scratch.file("etc.tar")
        try setup.ctl.run("files", "get", "web/one", "/etc", "-o", tarFile)
        let unpacked = setup.scratch.file("unpacked")
        try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true)
        try mustRun([
            "tar", "-C", unpacked, "-xpf", tarFile, "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner",
        ])
        try mustRun(["diff", "-r", "--no-dereference", "\(unpacked)/etc", setup.source("etc")])
        for name in ["etc/hostname", "etc/shadow", "etc/nginx", "etc/nginx/current"] {
            var a = stat()
            var b = stat()
            XCTAssertEqual(lstat("\(unpacked)/\(name)", &a), 0, name)
            lstat(setup.source(name), &b)
            XCTAssertEqual(a.st_mode, b.st_mode, name)
            XCTAssertEqual(a.st_uid, b.st_uid, name)
            XCTAssertEqual(a.st_mtim.tv_sec, b.st_mtim.tv_sec, name)
        }
        XCTAssertEqual(
            try mustRun(["getfattr", "--only-values", "-n", "user.origin", "\(unpacked)/etc/hostname"]),
            "web01 backup test")
        // One file, to standard output and to a file, byte for byte.
        let piped = setup.scratch.file("piped.bin")
        try mustRun(
            [
                "/bin/sh", "-c", "\"$0\" files get web/one --disk root /var/lib/data/large.bin -o - > \"$1\"",
                productPath("vaultctl"), piped,
            ], environment: ["VAULT_REPO": setup.ctl.repository])
        XCTAssertEqual(try readBytes(piped), try readBytes(setup.source("var/lib/data/large.bin")))
        let copy = setup.scratch.file("large.bin")
        try setup.ctl.run("files", "get", "web/one", "/var/lib/data/large.bin", "-o", copy)
        XCTAssertEqual(try readBytes(copy), try readBytes(setup.source("var/lib/data/large.bin")))
        // The listing, as JSON, with the original owners.
        let listing = try setup.ctl.json("files", "ls", "web/one", "/home/user")
        XCTAssertEqual(Set(listing.map { $0["name"] as! String }), ["docs", "private.key"])
        XCTAssertTrue(listing.allSatisfy { ($0["uid"] as! NSNumber).uint32Value == setup.user.uid })
    }

    /// A guest's tree of 1,000 folders, each named with 255 bytes: `files get` writes it as tar
    /// (each entry named with its whole path, up to 255 KB) in memory that grows with the
    /// depth, not its square. Keeping every level's path once took 187 MB more than one file.
    func testADeepTreeOfLongNamesIsArchivedInMemoryOfItsDepth() throws {
        let scratch = Scratch("deep")
        _ = try Ext4Image.make(
            at: scratch.file("root.img"), size: "64M", files: ["etc/hostname": Array("web\n".utf8)])
        let name = String(repeating: "d", count: 250) + "-long"
        let depth = 1000
        let script =
            String(repeating: "mkdir \(name)\ncd \(name)\n", count: depth) + "write \(scratch.file("last")) last\n"
        try Data(("cd /\nmkdir deep\ncd deep\n" + script).utf8).write(
            to: URL(fileURLWithPath: scratch.file("tree.cmd")))
        try Data("bottom of the tree\n".utf8).write(to: URL(fileURLWithPath: scratch.file("last")))
        try mustRun(["debugfs", "-w", "-f", scratch.file("tree.cmd"), scratch.file("root.img")], timeout: 300)
        let ctl = Vaultctl(repository: scratch.file("repo"))
        try ctl.run("init", ctl.repository)
        _ = try mustRun(
            [productPath("vaultctl"), "server", "add", "web", "--disk", "root=\(scratch.file("root.img"))"],
            environment: ["VAULT_REPO": ctl.repository])
        try ctl.run("backup", "web", "--name", "one")
        // Peak memory of the command, from its rusage, beside the same command for one file.
        func peakKiB(_ path: String, to output: String) throws -> Int {
            let text = try mustRun(
                [
                    "python3", "-c",
                    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
                        + "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
                    productPath("vaultctl"), "files", "get", "web/one", "--disk", "root", path, "-o", output,
                ], environment: ["VAULT_REPO": ctl.repository], timeout: 300)
            let fields = text.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            XCTAssertEqual(fields.first, "0", "files get \(path) exits 0")
            return Int(fields.last ?? "") ?? 0
        }
        let tar = scratch.file("deep.tar")
        let one = try peakKiB("/etc/hostname", to: scratch.file("hostname"))
        let deep = try peakKiB("/deep", to: tar)
        XCTAssertLessThan(deep - one, 48 << 10, "the deep tree took \(deep) KiB, one file \(one) KiB")
        // The tree is all there, down to the last file.
        let names = try mustRun(["tar", "-tf", tar], timeout: 120).split(separator: "\n")
        XCTAssertEqual(names.count, depth + 2, "deep, its folders and the last file")
        XCTAssertTrue(names.last?.hasSuffix("/" + name + "/last") ?? false)
    }

    func testDamagedFolderGivesEIOWhileTheRestReads() throws {
        let scratch = Scratch("damaged")
        let source = scratch.file("src")
        for folder in ["broken", "fine"] {
            try FileManager.default.createDirectory(atPath: "\(source)/\(folder)", withIntermediateDirectories: true)
            for k in 0..<20 {
                XCTAssertTrue(
                    FileManager.default.createFile(
                        atPath: "\(source)/\(folder)/f\(k)", contents: Data("\(folder) \(k)\n".utf8)))
            }
        }
        let disk = scratch.file("disk.img")
        try SourceTree(path: source).ext4(at: disk, size: "16M")
        // Overwrite the directory block of /broken with garbage: its checksum no longer holds.
        let blocks = try mustRun(["debugfs", "-R", "blocks /broken", disk]).split(separator: " ").compactMap { Int($0) }
        let blockSize = Int(
            try mustRun(["dumpe2fs", "-h", disk]).split(separator: "\n")
                .first { $0.hasPrefix("Block size:") }!.split(separator: " ").last!)!
        let fd = open(disk, O_WRONLY)
        XCTAssertEqual(
            pwrite(fd, pseudoRandomBytes(blockSize, seed: 9), blockSize, off_t(blocks[0] * blockSize)), blockSize)
        close(fd)
        let ctl = Vaultctl(repository: scratch.file("repo"))
        try ctl.run("init", ctl.repository)
        try ctl.run("server", "add", "db", "--disk", "root=\(disk)")
        try ctl.run("backup", "db", "--name", "one")
        let mount = try MountedRepository(repository: ctl.repository, at: scratch.file("mnt"))
        defer { mount.unmount() }
        let files = mount.path("default/db/one/files/root")
        try mount.io {
            XCTAssertThrowsError(try FileManager.default.contentsOfDirectory(atPath: "\(files)/broken"))
            XCTAssertNil(opendir("\(files)/broken"))
            XCTAssertEqual(errno, EIO)
            XCTAssertEqual(try String(contentsOfFile: "\(files)/fine/f3", encoding: .utf8), "fine 3\n")
        }
        XCTAssertTrue(mount.isRunning)
        XCTAssertTrue(mount.logText.contains("inode"), mount.logText)
        // The command line says what it could not read and writes the rest.
        let result = try ctl.attempt(["files", "get", "db/one", "/", "-o", scratch.file("all.tar")])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("/broken"), result.stderr)
        let listing = try mustRun(["tar", "-tf", scratch.file("all.tar")])
        XCTAssertTrue(listing.contains("root/fine/f19"), listing)
    }
}
