import Foundation
import Glibc
import TestSupport
import XCTest

/// Copy policies between named locations, on real repositories: two folders and a bucket of
/// the real Ceph gateway, one folder encrypted. The scheduler runs over simulated days; both
/// locations keep what their retention says, every copied point exports as it was backed up,
/// a gateway away for a day is caught up, a copy killed at any moment leaves a target that
/// verifies, and each configuration error is one line that changes nothing.
final class CopyTests: XCTestCase {
    private final class Setup {
        let scratch = Scratch("copies")
        let ctl: Vaultctl
        var config: String { scratch.file("etc/locations.toml") }
        var fast: String { scratch.file("fast") }
        var archive: String { scratch.file("archive") }
        let disk: String
        /// The disk's SHA-256 as each point saw it, by point name.
        var backedUp: [String: String] = [:]

        init(environment: [String: String] = [:]) throws {
            ctl = Vaultctl(
                repository: "",
                environment: environment.merging([
                    "VAULT_REPO": "", "VAULT_CONFIG": scratch.file("etc/locations.toml"),
                    "VAULT_COPY_DIR": scratch.file("copies"),
                ]) { $1 })
            disk = scratch.file("web.img")
            try ctl.run("init", fast, "--chunk-size", "256K")
            try ctl.run("location", "add", "fast", fast)
            XCTAssertTrue(
                FileManager.default.createFile(atPath: disk, contents: Data(pseudoRandomBytes(4 << 20, seed: 91))))
            let policy = ["--start", "02:00", "--every", "24h", "--incrementals", "1", "--keep-fulls", "2"]
            try ctl.run(["vault", "create", "prod"] + policy)
            try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk)")
        }

        /// Changes 64 KiB of the disk at a place that depends on `seed`.
        func change(_ seed: UInt64) throws {
            let fd = open(disk, O_WRONLY)
            XCTAssertGreaterThanOrEqual(fd, 0)
            defer { close(fd) }
            let bytes = pseudoRandomBytes(64 << 10, seed: seed)
            let offset = off_t((seed * 331) % 60) << 16
            XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, offset) }, bytes.count)
        }

        func digest(_ path: String) throws -> String {
            String(try mustRun(["sha256sum", path], timeout: 60).prefix(64))
        }

        /// Runs the scheduler at 02:00 of day `day` of January 2030 after changing the disk;
        /// the run's result, and the disk as that day's point saw it.
        @discardableResult
        func day(_ day: Int, extra: [String: String] = [:]) throws -> CommandResult {
            try change(UInt64(day))
            let name = String(format: "203001%02dT020000Z", day)
            backedUp[name] = try digest(disk)
            return try ctl.attempt(
                ["schedule", "run", "--once", "--now", String(format: "2030-01-%02dT02:00", day)], extra: extra,
                timeout: 300)
        }

        /// `points --json` of a location, the live points' names by kind.
        func points(_ location: String) throws -> [(name: String, kind: String)] {
            try ctl.json("points", "web", "--location", location).map {
                ($0["name"] as? String ?? "", $0["type"] as? String ?? "")
            }.sorted { $0.name < $1.name }
        }

        /// Every point of `location` exports as the disk was when it was backed up.
        func assertExportsAsBackedUp(_ location: String, file: StaticString = #filePath, line: UInt = #line) throws {
            for (name, _) in try points(location) {
                let out = scratch.file("export.img")
                defer { unlink(out) }
                try ctl.run("export", "web/\(name)", "--location", location, "-o", out)
                XCTAssertEqual(try digest(out), backedUp[name], "\(location) \(name)", file: file, line: line)
            }
        }
    }

    func testCopiesToABucketKeepTheirOwnChainsExportAsBackedUpAndCatchUpAfterTheGatewayWasAway() throws {
        let gateway = try CephGateway.shared()
        let setup = try Setup(environment: gateway.environment)
        let ctl = setup.ctl
        defer { try? gateway.resume() }
        // The third location: a folder, encrypted whatever the pass, with a vault of its own.
        let passphrase = setup.scratch.file("archive.pass")
        XCTAssertTrue(FileManager.default.createFile(atPath: passphrase, contents: Data("archive secret\n".utf8)))
        try ctl.attempt(
            ["init", setup.archive, "--chunk-size", "256K", "--encryption", "aes-256-gcm"],
            extra: ["VAULT_PASSPHRASE": "archive secret"]
        ).assertSucceeded()
        try ctl.run("location", "add", "archive", setup.archive, "--passphrase-file", passphrase)
        try ctl.run("vault", "create", "old", "--location", "archive")

        // The bucket becomes the mirror of fast's repository when it is named.
        let bucket = "s3://\(gateway.newBucket("copies"))/offsite"
        try ctl.run(
            "location", "add", "offsite", bucket, "--endpoint", gateway.endpoint, "--state-dir",
            setup.scratch.file("state-offsite"), "--mirror-of", "fast")
        XCTAssertTrue(
            try ctl.run("vault", "set", "prod", "--copy-to", "offsite", "--copy-every", "24h", "--copy-keep-fulls", "3")
                .contains("copied to location offsite every 1d, keeping 3 fulls there"))

        for day in 2...5 { XCTAssertEqual(try setup.day(day).status, 0) }
        // The gateway is away for day 6: the backup is made, the copy fails with its reason,
        // the run exits 1, and the history says why.
        try gateway.pause()
        let away = try setup.day(6)
        XCTAssertEqual(away.status, 1, away.stdout)
        XCTAssertTrue(away.stdout.contains("web (fast) full 20300106T020000Z: made"), away.stdout)
        XCTAssertTrue(away.stderr.contains("copy of vault prod to offsite failed"), away.stderr)
        try gateway.resume()
        let caughtUp = try setup.day(7)
        XCTAssertEqual(caughtUp.status, 0, caughtUp.stderr)
        XCTAssertTrue(caughtUp.stdout.contains("copied vault prod from fast to offsite: 2 point(s)"), caughtUp.stdout)
        for day in 8...11 { XCTAssertEqual(try setup.day(day).status, 0) }

        let history = try ctl.json("history", "--copies")
        XCTAssertEqual(history.count, 10)
        XCTAssertEqual(history.map { $0["outcome"] as? String }.filter { $0 == "failed" }.count, 1)
        let failure = try XCTUnwrap(history.first { $0["outcome"] as? String == "failed" })
        XCTAssertTrue((failure["error"] as? String ?? "").contains("offsite"), "\(failure)")

        // fast keeps 2 chains by its policy; the copy keeps 3 by its own; each point exports
        // as the disk was when it was backed up, in either place.
        XCTAssertEqual(
            try setup.points("fast").map(\.name),
            ["20300108T020000Z", "20300109T020000Z", "20300110T020000Z", "20300111T020000Z"])
        XCTAssertEqual(
            try setup.points("offsite").map(\.name),
            (6...11).map { String(format: "203001%02dT020000Z", $0) })
        XCTAssertEqual(try setup.points("offsite").filter { $0.kind == "Full" }.count, 3)
        try setup.assertExportsAsBackedUp("fast")
        try setup.assertExportsAsBackedUp("offsite")
        // A point only the copy holds is read there when the command names the mirror.
        let out = setup.scratch.file("only-copy.img")
        XCTAssertTrue(
            try ctl.refusal("export", "web/20300106T020000Z", "-o", out).contains(
                "only in location offsite, a mirror that takes copies: add --location offsite"))
        try ctl.run("export", "web/20300106T020000Z", "--location", "offsite", "-o", out)
        XCTAssertEqual(try setup.digest(out), setup.backedUp["20300106T020000Z"])
        try ctl.run("verify", "--location", "offsite")
        // With the source away, the line names the copy, which --location reads.
        XCTAssertEqual(rename(setup.fast, setup.fast + ".away"), 0)
        let sourceAway = try ctl.refusal("export", "web/20300111T020000Z", "-o", out)
        XCTAssertEqual(rename(setup.fast + ".away", setup.fast), 0)
        XCTAssertTrue(sourceAway.contains("a copy is in location offsite: add --location offsite"), sourceAway)
        // The copy is listed as one, never backed up there, and archive is left alone.
        let vaults = try ctl.json("vault", "list")
        let copy = try XCTUnwrap(vaults.first { $0["location"] as? String == "offsite" })
        XCTAssertEqual(copy["isCopy"] as? Bool, true)
        let servers = try ctl.json("server", "list")
        XCTAssertEqual(
            Set(servers.map { "\($0["location"] as? String ?? "")/\($0["isCopy"] as? Bool ?? false)" }),
            ["fast/false", "offsite/true"])
        XCTAssertEqual(
            Set(vaults.map { "\($0["location"] as? String ?? "")/\($0["vault"] as? String ?? "")" }),
            ["fast/prod", "offsite/prod", "archive/old"])
        XCTAssertEqual(try ctl.json("points", "--location", "archive").count, 0)
        // A copy never deletes from the source: fast lost only what its own retention said.
        let fastHistory = try ctl.json("history", "web", "--location", "fast")
        XCTAssertEqual(fastHistory.filter { ($0["deletion"] as? String ?? "").isEmpty }.count, 4)
    }

    func testACopyKilledAtAnyMomentLeavesATargetThatVerifiesAndTheNextCopyCompletes() throws {
        let setup = try Setup()
        let ctl = setup.ctl
        try ctl.run("location", "add", "offsite", setup.scratch.file("offsite"), "--mirror-of", "fast")
        try ctl.run("vault", "set", "prod", "--copy-to", "offsite", "--copy-keep-fulls", "4")
        for (index, moment) in ["sync-chunks-copied", "sync-maps-copied", "sync-manifest-copied"].enumerated() {
            try setup.change(UInt64(index))
            setup.backedUp["k\(index)"] = try setup.digest(setup.disk)
            try ctl.run("backup", "web", "--name", "k\(index)")
            let killed = try ctl.attempt(["copy", "prod"], extra: ["VAULTFS_FAULT": moment])
            XCTAssertEqual(killed.status, SIGKILL, "\(moment): \(killed.stderr)")
            try ctl.run("verify", "--location", "offsite")
            XCTAssertTrue(try ctl.run("copy", "prod").contains("copied vault prod from fast to offsite"))
            try ctl.run("verify", "--location", "offsite")
            XCTAssertEqual(try setup.points("offsite").map(\.name), try setup.points("fast").map(\.name))
            try setup.assertExportsAsBackedUp("offsite")
        }
        // A target away (a disk not mounted) fails the copy; nothing is made in its place.
        let offsite = setup.scratch.file("offsite")
        XCTAssertEqual(rename(offsite, offsite + ".away"), 0)
        let away = try ctl.attempt(["copy", "prod"])
        XCTAssertEqual(away.status, 1, away.stdout)
        XCTAssertTrue(away.stderr.contains("location offsite cannot be opened"), away.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: offsite))
        XCTAssertEqual(rename(offsite + ".away", offsite), 0)
        try ctl.run("verify", "--location", "offsite")
    }

    func testTheLongRunningSchedulerCopiesBesideItsBackupsAndOneCopyIntoATargetRunsAtATime() throws {
        let setup = try Setup()
        let ctl = setup.ctl
        try ctl.run("location", "add", "offsite", setup.scratch.file("offsite"), "--mirror-of", "fast")
        try ctl.run("vault", "set", "prod", "--copy-to", "offsite", "--copy-keep-fulls", "2")
        try ctl.run("backup", "web", "--name", "first")
        // Another copy into offsite holds the host's lock: the scheduler passes the copy over
        // and 'copy' refuses, neither recording a failure the running copy would contradict.
        let lock = setup.scratch.file("copies/offsite.lock")
        try FileManager.default.createDirectory(
            atPath: setup.scratch.file("copies"), withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
        let held = open(lock, O_RDWR | O_CREAT, 0o600)
        XCTAssertGreaterThanOrEqual(held, 0)
        XCTAssertEqual(flock(held, LOCK_EX), 0)
        let skipped = try ctl.attempt(["schedule", "run", "--once", "--now", "2030-01-02T00:00"])
        XCTAssertEqual(skipped.status, 0, skipped.stderr)
        XCTAssertFalse(skipped.stdout.contains("copied vault"), skipped.stdout)
        XCTAssertTrue(try ctl.refusal("copy", "prod").contains("another copy into location offsite is running"))
        XCTAssertEqual(try ctl.json("history", "--copies").count, 0)
        close(held)

        // The long-running scheduler makes the due backup, copies in the background, and
        // stops on SIGTERM.
        let out = setup.scratch.file("scheduler.out")
        XCTAssertTrue(FileManager.default.createFile(atPath: out, contents: nil))
        let scheduler = try ctl.start(["schedule", "run"], output: out)
        defer { if scheduler.isRunning { kill(scheduler.processIdentifier, SIGKILL) } }
        XCTAssertTrue(try eventually(timeout: 60) { try ctl.json("history", "--copies").count == 1 })
        kill(scheduler.processIdentifier, SIGTERM)
        XCTAssertTrue(eventually(timeout: 20) { !scheduler.isRunning })
        XCTAssertEqual(scheduler.terminationStatus, 0)
        let entry = try XCTUnwrap(try ctl.json("history", "--copies").first)
        XCTAssertEqual(entry["outcome"] as? String, "done", "\(entry)")
        XCTAssertEqual(try setup.points("offsite").map(\.name), try setup.points("fast").map(\.name))
        XCTAssertGreaterThanOrEqual(try setup.points("fast").count, 2)
        try ctl.run("verify", "--location", "offsite")
    }

    func testOneMountShowsEveryLocationAndACopysPointJsonSaysWhatItIsACopyOf() throws {
        let setup = try Setup()
        let ctl = setup.ctl
        try ctl.run("location", "add", "offsite", setup.scratch.file("offsite"), "--mirror-of", "fast")
        try ctl.run("init", setup.archive, "--chunk-size", "256K")
        try ctl.run("location", "add", "archive", setup.archive)
        try ctl.run("vault", "create", "old", "--location", "archive")
        try ctl.run("vault", "set", "prod", "--copy-to", "offsite", "--copy-keep-fulls", "2")
        setup.backedUp["one"] = try setup.digest(setup.disk)
        try ctl.run("backup", "web", "--name", "one")
        try ctl.run("copy", "prod")
        let id = try XCTUnwrap(try ctl.json("points", "web").first?["id"] as? String)

        // The fstab form: a source that only names the mount, and all_locations.
        let mount = try MountedRepository(
            repository: "vaultfs-locations", at: setup.scratch.file("mnt"), options: ["all_locations"],
            environment: ctl.environment.merging(["VAULT_CONFIG_DIR": testConfigDirectory]) { $1 })
        defer { mount.unmount() }
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint).sorted(),
            ["archive", "fast", "offsite"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mount.path("archive")), ["old"])
        for location in ["fast", "offsite"] {
            XCTAssertEqual(
                try setup.digest(mount.path("\(location)/prod/web/one/root.img")), setup.backedUp["one"], location)
        }
        let copy =
            try JSONSerialization.jsonObject(
                with: Data(try readBytes(mount.path("offsite/prod/web/one/point.json")))) as? [String: Any]
        XCTAssertEqual(copy?["copyOf"] as? [String: String], ["location": "fast", "point": id])
        let own =
            try JSONSerialization.jsonObject(
                with: Data(try readBytes(mount.path("fast/prod/web/one/point.json")))) as? [String: Any]
        XCTAssertNil(own?["copyOf"])
        // Backup now works in a location's folder, as in a mount of it alone.
        try setup.change(99)
        setup.backedUp["now"] = try setup.digest(setup.disk)
        XCTAssertEqual(mkdir(mount.path("fast/prod/web/now"), 0o755), 0, String(cString: strerror(errno)))
        let deadline = Date().addingTimeInterval(60)
        while try ctl.json("points", "web").first(where: { $0["name"] as? String == "now" })?["status"] as? String
            != "Active", Date() < deadline
        {
            usleep(100_000)
        }
        XCTAssertEqual(try setup.digest(mount.path("fast/prod/web/now/root.img")), setup.backedUp["now"])
        // Nothing can be made at the root or in a location's folder.
        XCTAssertNotEqual(mkdir(mount.path("elsewhere"), 0o755), 0)
        XCTAssertNotEqual(mkdir(mount.path("fast/new-vault"), 0o755), 0)
        mount.unmount()

        // The command line's form detaches, and refuses what only one repository has.
        let mountpoint = setup.scratch.file("mnt2")
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let variables = ctl.environment.merging(["VAULT_CONFIG_DIR": testConfigDirectory]) { $1 }
        try mustRun([productPath("vaultfs"), "--all-locations", mountpoint], environment: variables, timeout: 60)
        defer { _ = try? runCommand(["fusermount3", "-u", mountpoint], timeout: 10) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(mountpoint)/offsite/prod/web/one/root.img"))
        try mustRun(["fusermount3", "-u", mountpoint], timeout: 10)
        let refused = try runCommand(
            [productPath("vaultfs"), "--all-locations", mountpoint, "-o", "vault=prod"], environment: variables,
            timeout: 60)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("all_locations takes each location's settings"), refused.stderr)
        let repositoryGiven = try runCommand(
            [productPath("vaultfs"), "--all-locations", setup.fast, mountpoint], environment: variables, timeout: 60)
        XCTAssertEqual(repositoryGiven.status, 1)
        XCTAssertTrue(repositoryGiven.stderr.contains("its source names the mount"), repositoryGiven.stderr)
    }

    func testEachCopyConfigurationErrorIsOneLineAndChangesNothing() throws {
        let setup = try Setup()
        let ctl = setup.ctl
        // Without named locations there are no copy policies.
        let none = setup.scratch.file("none.toml")
        let missing = try ctl.attempt(
            ["vault", "set", "prod", "--copy-to", "x", "--copy-keep-fulls", "2"], extra: ["VAULT_CONFIG": none])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("does not exist"), missing.stderr)

        try ctl.run("init", setup.archive, "--chunk-size", "256K")
        try ctl.run("location", "add", "archive", setup.archive)
        // A mirror is made only where nothing is, or where the mirror is.
        XCTAssertTrue(
            try setup.ctl.refusal("location", "add", "other", setup.archive + "/..", "--mirror-of", "fast")
                .contains("not empty"))
        let before = try readBytes(setup.config)
        let keep = ["--copy-keep-fulls", "2"]
        for (arguments, expected) in [
            (["vault", "set", "prod", "--copy-to", "nope"] + keep, "no location named 'nope'"),
            (["vault", "set", "prod", "--copy-to", "fast"] + keep, "copy it to another one"),
            (["vault", "set", "prod", "--copy-to", "archive"] + keep, "location archive is not the mirror of fast"),
            (["vault", "set", "nope", "--copy-to", "archive"] + keep, "no vault named 'nope'"),
            (["vault", "set", "prod", "--copy-to", "archive"], "--copy-keep-fulls"),
            (["vault", "set", "prod", "--copy-to", "archive", "--copy-keep-fulls", "0"], "from 1 to 1000"),
            (["vault", "set", "prod", "--copy-to", "archive", "--copy-every", "soon"] + keep, "bad --copy-every"),
            (["vault", "set", "prod", "--no-copy"], "has no copy policy"),
            (["copy", "prod"], "has no copy policy"),
        ] {
            let said = try setup.ctl.refusal(arguments)
            XCTAssertTrue(said.contains(expected), "\(arguments): \(said)")
        }
        XCTAssertEqual(try readBytes(setup.config), before)

        // A location that takes copies stays until its policy goes.
        try ctl.run("location", "add", "offsite", setup.scratch.file("offsite"), "--mirror-of", "fast")
        try ctl.run("vault", "set", "prod", "--copy-to", "offsite", "--copy-keep-fulls", "2")
        let withCopy = try readBytes(setup.config)
        XCTAssertTrue(try setup.ctl.refusal("location", "remove", "offsite").contains("takes the copies of vault prod"))
        // Another repository's vault cannot send copies to the same mirror, a mirror has no
        // mirror, and nothing is made or backed up in a mirror.
        try ctl.run("vault", "create", "old", "--location", "archive")
        XCTAssertTrue(
            try setup.ctl.refusal("vault", "set", "old", "--copy-to", "offsite", "--copy-keep-fulls", "2")
                .contains("location offsite is not the mirror of archive"))
        XCTAssertTrue(
            try setup.ctl.refusal("location", "add", "far", setup.scratch.file("far"), "--mirror-of", "offsite")
                .contains("is the mirror of fast itself"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: setup.scratch.file("far")))
        // fast's own store under another name is not its mirror: a symbolic link is seen
        // through, and a bind mount is told by the store's id.
        let alias = setup.scratch.file("fast-alias")
        XCTAssertEqual(symlink(setup.fast, alias), 0)
        XCTAssertTrue(
            try setup.ctl.refusal("location", "add", "alias", alias, "--mirror-of", "fast")
                .contains("is that repository already"))
        let bound = setup.scratch.file("fast-bound")
        try FileManager.default.createDirectory(atPath: bound, withIntermediateDirectories: true)
        try mustRun(["mount", "--bind", setup.fast, bound], timeout: 30)
        defer { _ = try? runCommand(["umount", bound], timeout: 30) }
        XCTAssertTrue(
            try setup.ctl.refusal("location", "add", "bound", bound, "--mirror-of", "fast")
                .contains("is the repository of location fast itself, under another name"))
        try mustRun(["umount", bound], timeout: 30)
        XCTAssertTrue(
            try setup.ctl.refusal("vault", "create", "new", "--location", "offsite").contains("takes copies only"))
        try ctl.run("backup", "web", "--name", "first")
        try ctl.run("copy", "prod")
        XCTAssertTrue(
            try setup.ctl.refusal("backup", "web", "--location", "offsite").contains("takes copies only"))
        XCTAssertTrue(
            try setup.ctl.refusal("schedule", "run", "--once", "--location", "offsite").contains("takes copies only"))
        XCTAssertEqual(try readBytes(setup.config), withCopy)
        // Without its policy, the mirror keeps what was copied, and the scheduler leaves it alone.
        try ctl.run("vault", "set", "prod", "--no-copy")
        let pointsThere = try setup.points("offsite").map(\.name)
        try ctl.run("schedule", "run", "--once", "--now", "2030-01-20T02:00")
        XCTAssertEqual(try setup.points("offsite").map(\.name), pointsThere)
        XCTAssertEqual(try setup.points("fast").count, pointsThere.count + 1)
        XCTAssertTrue(try setup.ctl.refusal("location", "remove", "offsite").contains("holds vault(s) prod"))

        // A [[copy]] edited by hand with a mistake is refused with its line, never half read.
        let locations = try String(contentsOfFile: setup.config, encoding: .utf8)
        for (table, expected) in [
            ("[[copy]]\nvault = \"prod\"\nto = \"archive\"\nevery = \"1d\"\n", "needs vault, to, every and keep-fulls"),
            ("[[copy]]\nvault = \"prod\"\nto = \"gone\"\nevery = \"1d\"\nkeep-fulls = 2\n", "which is no location"),
            ("[[copy]]\nvault = \"prod\"\nto = \"archive\"\nevery = \"1d\"\nkeep-fulls = 2\n", "which is no mirror"),
            ("[[copy]]\nvault = \"prod\"\nto = \"archive\"\nevery = \"1d\"\nkeep-fulls = 2\nkeep = 1\n", "unknown key"),
            ("[[copy]]\nvault = \"prod\"\nto = \"archive\"\nevery = \"often\"\nkeep-fulls = 2\n", "bad every"),
            (
                "[[location]]\nname = \"stray\"\nrepository = \"/nowhere\"\nmirror-of = \"gone\"\n",
                "the mirror of 'gone', which is no other location here"
            ),
        ] {
            let text = locations + "\n" + table
            XCTAssertTrue(FileManager.default.createFile(atPath: setup.config, contents: Data(text.utf8)))
            XCTAssertTrue(try setup.ctl.refusal("vault", "list").contains(expected), table)
            XCTAssertEqual(try String(contentsOfFile: setup.config, encoding: .utf8), text)
        }
    }
}

extension CommandResult {
    func assertSucceeded(file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(status, 0, "\(stdout)\(stderr)", file: file, line: line)
    }
}
