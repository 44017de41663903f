import Foundation
import TestSupport
import VaultCore
import XCTest

/// `vaultctl` as a user runs it: names, tags, defaults, deletion, and refusals.
final class CommandLineTests: XCTestCase {
    var scratch: Scratch!
    var ctl: Vaultctl!
    var disk: Ext4Image!

    override func setUpWithError() throws {
        scratch = Scratch("cli")
        ctl = Vaultctl(repository: scratch.file("repo"))
        disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "16M", files: ["f": pseudoRandomBytes(200_000, seed: 1)])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run("vault", "create", "prod")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
    }

    /// Everything a refused command must leave as it was.
    private func storedState() throws -> String {
        let files = try mustRun(["find", scratch.file("repo/chunks"), scratch.file("repo/maps"), "-type", "f"])
        return try ctl.run("history", "--json") + ctl.run("vault", "list", "--json") + ctl.run("server", "list")
            + files.split(separator: "\n").sorted().joined(separator: "\n")
    }

    private func assertRefused(
        _ arguments: [String], mentions text: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let result = try ctl.attempt(arguments)
        XCTAssertNotEqual(result.status, 0, "\(arguments) succeeded", file: file, line: line)
        let lines = result.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "\(arguments) printed: \(result.stderr)", file: file, line: line)
        XCTAssertTrue(
            result.stderr.contains(text), "\(arguments): '\(result.stderr)' lacks '\(text)'", file: file, line: line)
    }

    func testBadInputGivesOneClearLineAndChangesNothing() throws {
        try ctl.run("backup", "web", "--name", "first")
        try ctl.run("server", "add", "ghost", "--vault", "prod", "--disk", "root=\(scratch.file("missing.img"))")
        try FileManager.default.createDirectory(atPath: scratch.file("adir"), withIntermediateDirectories: true)
        try ctl.run("server", "add", "odd", "--vault", "prod", "--disk", "root=\(scratch.file("adir"))")
        let before = try storedState()

        try assertRefused(["backup", "ghost"], mentions: "missing.img")
        try assertRefused(["backup", "odd"], mentions: "not a block device or an image file")
        try assertRefused(["backup", "web", "--name", "bad name"], mentions: "bad point name")
        try assertRefused(["backup", "web", "--name", "first"], mentions: "already has a point named 'first'")
        try assertRefused(["backup", "web", "--tag", "k=v v"], mentions: "bad tag value")
        try assertRefused(
            ["backup", "web", "--description", String(repeating: "d", count: 256)], mentions: "at most 255")
        try assertRefused(["backup", "nosuch"], mentions: "no server named 'nosuch'")
        try assertRefused(["backup", "web", "ghost"], mentions: "missing.img")
        try assertRefused(["backup", "web", "--disk", "nope"], mentions: "no disk named 'nope'")
        try assertRefused(
            ["server", "add", "x", "--vault", "nosuch", "--disk", "r=/tmp/x"], mentions: "no vault named 'nosuch'")
        try assertRefused(["export", "nosuch", "-o", scratch.file("out.img")], mentions: "no point matches 'nosuch'")
        try assertRefused(["delete", "nosuch"], mentions: "no point matches")
        try assertRefused(["vault", "remove", "prod"], mentions: "still has")
        try assertRefused(["points", "--repo", scratch.path], mentions: "is not a vaultfs repository")
        XCTAssertEqual(try storedState(), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("out.img")))
    }

    func testSecondBackupOfABusyServerIsRefused() throws {
        try ctl.run(
            "server", "add", "slow", "--vault", "prod", "--disk", "root=\(disk.path)", "--freeze-command", "sleep 3")
        let first = try ctl.start(["backup", "slow", "--name", "first"])
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        XCTAssertTrue(
            try eventually(timeout: 10) { try ctl.json("points").contains { $0["status"] as? String == "Creating" } })
        try assertRefused(["backup", "slow", "--name", "second"], mentions: "busy")
        XCTAssertTrue(eventually(timeout: 30) { !first.isRunning })
        XCTAssertEqual(first.terminationStatus, 0)
        XCTAssertEqual(try ctl.json("points").map { $0["name"] as! String }, ["first"])
    }

    func testNamesDescriptionsTagsAndSuffixes() throws {
        try ctl.run("server", "add", "db", "--vault", "prod", "--disk", "root=\(disk.path)")
        try ctl.run(
            "backup", "web", "db", "--name", "nightly", "--description", "before upgrade", "--tag", "env=prod", "--tag",
            "ticket=")
        try ctl.run("backup", "web")
        let points = try ctl.json("points")
        XCTAssertEqual(
            Set(points.map { "\($0["server"]!)/\($0["name"]!)" }).subtracting(
                points.filter {
                    ($0["name"] as! String).hasPrefix("manualbk_")
                }.map { "\($0["server"]!)/\($0["name"]!)" }),
            ["web/nightly-0001", "db/nightly-0002"])
        let nightly = try XCTUnwrap(points.first { $0["name"] as? String == "nightly-0001" })
        XCTAssertEqual(nightly["description"] as? String, "before upgrade")
        XCTAssertEqual(nightly["tags"] as? [String: String], ["env": "prod", "ticket": ""])
        XCTAssertEqual(nightly["scheduleType"] as? String, "Manual")
        XCTAssertEqual(nightly["type"] as? String, "Full")
        let generated =
            try XCTUnwrap(points.first { ($0["name"] as! String).hasPrefix("manualbk_") })["name"] as! String
        XCTAssertNotNil(generated.range(of: "^manualbk_[0-9a-f]{4}$", options: .regularExpression), generated)
    }

    func testBackupOfServerWithoutVaultCreatesTheDefaultVault() throws {
        try ctl.run("server", "add", "lonely", "--disk", "root=\(disk.path)")
        XCTAssertTrue(try ctl.run("server", "list").contains("lonely  -"))
        // The backup says it put the server in a vault with a policy: the scheduler backs it
        // up from now on.
        let first = try ctl.attempt(["backup", "lonely", "--name", "now"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(
            first.stderr.contains(
                "server lonely was in no vault: it is now in vault 'default' (made now) with policy every 24h"),
            first.stderr)
        try ctl.run("server", "add", "alone", "--disk", "root=\(disk.path)")
        let json = try ctl.run("backup", "alone", "--json")
        let made = try XCTUnwrap(
            (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])?.first)
        let enrolled = try XCTUnwrap(made["enrolledIn"] as? [String: Any], json)
        XCTAssertEqual(enrolled["vault"] as? String, "default")
        XCTAssertEqual(enrolled["created"] as? Bool, false, "the default vault was there already")
        XCTAssertEqual(enrolled["everyHours"] as? Int, 24)
        // A server already in a vault is not enrolled again.
        let again = try ctl.attempt(["backup", "alone", "--json"])
        XCTAssertFalse(again.stderr.contains("was in no vault"), again.stderr)
        XCTAssertFalse(again.stdout.contains("enrolledIn"), again.stdout)
        let vaults = try ctl.json("vault", "list")
        let fallback = try XCTUnwrap(vaults.first { $0["vault"] as? String == "default" })
        let policy = try XCTUnwrap(fallback["policy"] as? [String: Any])
        XCTAssertEqual(policy["enabled"] as? Bool, true)
        XCTAssertEqual(policy["everyHours"] as? Int, 24)
        XCTAssertTrue(try ctl.run("server", "show", "lonely").contains("vault:  default"))
        XCTAssertEqual(try ctl.json("points", "lonely").first?["vault"] as? String, "default")
    }

    func testSoftDeleteUndeleteAndPurgeThroughTheCommand() throws {
        try ctl.run("backup", "web", "--name", "one")
        try ctl.run("backup", "web", "--name", "two")
        try ctl.run("delete", "web/one")
        XCTAssertEqual(try ctl.json("points").map { $0["name"] as! String }, ["two"])
        XCTAssertEqual(try ctl.json("points", "--all").count, 2)
        try ctl.run("undelete", "web/one")
        XCTAssertEqual(try ctl.json("points").count, 2)
        try ctl.run("delete", "web/one")
        XCTAssertTrue(try ctl.run("purge", "--older-than", "1d").contains("nothing to purge"))
        XCTAssertTrue(try ctl.run("purge").contains("purged web/one"))
        let status = try ctl.json("history").map { "\($0["name"]!)=\($0["deletion"]!)" }
        XCTAssertEqual(status, ["one=Deleted", "two="])
        try assertRefused(["undelete", "web/one"], mentions: "no point matches")
    }

    func testGcWithAGracePeriodMarksUnusedChunksFirstAndRemovesThemOnlyLater() throws {
        let graced = Vaultctl(repository: scratch.file("graced"))
        try graced.run("init", graced.repository, "--chunk-size", "64K", "--gc-grace", "1h")
        XCTAssertTrue(try graced.run("info").contains("gc grace:    1h"))
        try graced.run("server", "add", "web", "--disk", "root=\(disk.path)")
        try graced.run("backup", "web", "--name", "one")
        try disk.write("g", pseudoRandomBytes(300_000, seed: 2))
        try graced.run("backup", "web", "--name", "two")
        let chunks = {
            try mustRun(["find", self.scratch.file("graced/chunks"), "-type", "f"]).split(separator: "\n").count
        }
        let before = try chunks()
        let gc = { (arguments: [String]) throws -> [String: Any] in
            try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(try graced.run(["gc", "--json"] + arguments).utf8))
                    as? [String: Any])
        }
        // Soft-deleted: nothing is unused yet.
        try graced.run("delete", "web/two")
        XCTAssertEqual(try gc([])["markedChunks"] as? Int, 0)
        // Purged: the chunks only two used are marked (by the purge's collection) and stay.
        try graced.run("purge")
        let marked = try gc([])
        XCTAssertEqual(marked["removedChunks"] as? Int, 0)
        XCTAssertGreaterThan(marked["markedChunks"] as? Int ?? 0, 0)
        XCTAssertEqual(try chunks(), before)
        XCTAssertTrue(try graced.run("gc").contains("marked \(marked["markedChunks"]!) unused chunk(s)"))
        // With no grace for this run they go, and what one uses stays readable.
        let removed = try gc(["--grace", "0"])
        XCTAssertEqual(removed["removedChunks"] as? Int, marked["markedChunks"] as? Int)
        XCTAssertEqual(removed["markedChunks"] as? Int, 0)
        XCTAssertEqual(try chunks(), before - (removed["removedChunks"] as! Int))
        XCTAssertTrue(try graced.run("verify").contains("all intact"))
        XCTAssertNotEqual(try graced.attempt(["gc", "--grace", "soon"]).status, 0)
    }

    func testServerMoveLeavesPointsInTheirVault() throws {
        try ctl.run("backup", "web", "--name", "in-prod")
        try ctl.run("vault", "create", "dr")
        try ctl.run("server", "move", "web", "--vault", "dr")
        try ctl.run("backup", "web", "--name", "in-dr")
        let vaults = Dictionary(
            uniqueKeysWithValues: try ctl.json("points").map { ($0["name"] as! String, $0["vault"] as! String) })
        XCTAssertEqual(vaults, ["in-prod": "prod", "in-dr": "dr"])
    }

    func testExportStreamsToStandardOutput() throws {
        try ctl.run("backup", "web", "--name", "one")
        let out = scratch.file("streamed.img")
        try mustRun(
            ["sh", "-c", "\"$0\" export web/one -o - > \(out)", productPath("vaultctl")],
            environment: ["VAULT_REPO": ctl.repository])
        try mustRun(["cmp", out, disk.path])
    }

    func testFullRepositoryDiskFailsTheBackupAndKeepsEarlierPoints() throws {
        let small = scratch.file("small")
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        try mustRun(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", small])
        defer { _ = try? runCommand(["umount", "-l", small], timeout: 10) }
        let tight = Vaultctl(repository: "\(small)/repo")
        try tight.run("init", tight.repository, "--chunk-size", "64K")
        try tight.run("vault", "create", "prod")
        try tight.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        try tight.run("backup", "web", "--name", "fits")
        let big = scratch.file("big.img")
        XCTAssertTrue(
            FileManager.default.createFile(atPath: big, contents: Data(pseudoRandomBytes(12 << 20, seed: 77))))
        try tight.run("server", "add", "big", "--vault", "prod", "--disk", "root=\(big)")

        let result = try tight.attempt(["backup", "big", "--name", "too-big"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stdout.contains("disk is full"), result.stdout + result.stderr)
        let history = try tight.json("history")
        XCTAssertEqual(history.map { "\($0["name"]!)=\($0["status"]!)" }, ["fits=Active", "too-big=Error"])
        let out = scratch.file("fits.img")
        try tight.run("export", "web/fits", "-o", out)
        try mustRun(["cmp", out, disk.path])
        try tight.run("backup", "web", "--name", "after")
    }

    func testRepositoryMayBeGivenBeforeTheSubcommand() throws {
        try ctl.run("backup", "web", "--name", "one")
        let listing = try mustRun([productPath("vaultctl"), "-R", ctl.repository, "points"])
        XCTAssertTrue(listing.contains("one"), listing)
        XCTAssertTrue(try mustRun([productPath("vaultctl"), "--repo=\(ctl.repository)", "history"]).contains("one"))
        // At any level, given twice (the last wins), and with the other shared options.
        let bare = ["VAULT_REPO": ""]
        XCTAssertTrue(
            try mustRun([productPath("vaultctl"), "vault", "-R", ctl.repository, "list"], environment: bare).contains(
                "prod"))
        XCTAssertTrue(
            try mustRun(
                [productPath("vaultctl"), "-R", scratch.file("nope"), "-R", ctl.repository, "points"], environment: bare
            ).contains("one"))
        let json = try mustRun([productPath("vaultctl"), "--json", "-R", ctl.repository, "points"], environment: bare)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [Any])?.count, 1, json)
        // Options that do not apply to a folder repository say so.
        let endpoint = try runCommand(
            [productPath("vaultctl"), "-R", ctl.repository, "--endpoint", "http://127.0.0.1:1", "points"],
            environment: bare)
        XCTAssertEqual(endpoint.status, 0, endpoint.stderr)
        XCTAssertTrue(endpoint.stderr.contains("warning: --endpoint is for s3:// repositories"), endpoint.stderr)
        if !Vaultctl.encryptsByDefault {
            let keyFile = try ctl.attempt(["points", "--key-file", scratch.file("key")])
            XCTAssertTrue(keyFile.stderr.contains("warning: --key-file is for encrypted repositories"), keyFile.stderr)
        }
    }

    /// `points`, `history` and `delete` select points the same way: a server as the argument
    /// (or `--server` for `delete`), and `--vault`, `--type`, `--since`, `--before`.
    func testPointsHistoryAndDeleteSelectPointsOneWay() throws {
        try ctl.run(
            "policy", "set", "prod", "--start", "00:00", "--every", "1h", "--incrementals", "3", "--keep-fulls", "5",
            "--now", "2030-01-01T00:00Z")
        for hour in 1...3 { try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T0\(hour):00Z") }
        let names = { (arguments: [String]) throws -> [String] in
            try self.ctl.json(arguments).compactMap { $0["name"] as? String }.sorted()
        }
        XCTAssertEqual(
            try names(["points", "web", "--type", "incremental"]), ["20300101T020000Z", "20300101T030000Z"])
        XCTAssertEqual(try names(["points", "--vault", "prod", "--type", "full"]), ["20300101T010000Z"])
        XCTAssertEqual(try names(["points", "web", "--since", "2030-01-01T03:00Z"]), ["20300101T030000Z"])
        XCTAssertEqual(try names(["points", "--before", "2030-01-01T02:00Z"]), ["20300101T010000Z"])
        XCTAssertEqual(try names(["history", "web", "--type", "full"]), ["20300101T010000Z"])
        let old = try ctl.attempt(["history", "--server", "web", "--json"])
        XCTAssertEqual(old.status, 0, old.stderr)
        XCTAssertTrue(old.stderr.contains("history --server SERVER is now history SERVER"), old.stderr)
        try assertRefused(["points", "--type", "weekly"], mentions: "bad --type 'weekly'")

        // A deletion that would leave a kept incremental without its parent is refused whole.
        try assertRefused(["delete", "--server", "web", "--type", "full"], mentions: "nothing was deleted")
        XCTAssertEqual(try names(["points", "web"]).count, 3)
        try assertRefused(["delete", "--server", "web", "--since", "2031-01-01"], mentions: "no point matches")
        let deleted = try ctl.json("delete", "--server", "web", "--since", "2030-01-01T02:00Z")
        XCTAssertEqual(deleted.compactMap { $0["name"] as? String }, ["20300101T030000Z", "20300101T020000Z"])
        XCTAssertEqual(try names(["points", "web"]), ["20300101T010000Z"])
        let one = try ctl.run("delete", "web/20300101T010000Z", "--json")
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(one.utf8)) as? [String: Any], one)
    }

    /// Tables show local time with its offset, or UTC with --utc; JSON stays UTC.
    func testTablesShowLocalTimeWithItsOffsetOrUTC() throws {
        try ctl.run("backup", "web", "--name", "one")
        let india = try mustRun(
            [productPath("vaultctl"), "points"], environment: ["VAULT_REPO": ctl.repository, "TZ": "Asia/Kolkata"])
        XCTAssertTrue(india.contains(" +0530"), india)
        let utc = try mustRun(
            [productPath("vaultctl"), "points", "--utc"],
            environment: ["VAULT_REPO": ctl.repository, "TZ": "Asia/Kolkata"])
        XCTAssertTrue(utc.contains(" +0000") && !utc.contains("+0530"), utc)
        XCTAssertTrue((try ctl.json("points").first?["time"] as? String)?.hasSuffix("Z") == true)
        // files ls gives sizes as every other table does.
        let listing = try ctl.run("files", "ls", "web/one", "/")
        let line = try XCTUnwrap(listing.split(separator: "\n").first { $0.hasSuffix(" f") }, listing)
        XCTAssertTrue(line.contains("KiB") && !line.contains("200000"), listing)
    }

    /// What a borg or restic user types first.
    func testVersionsVerbsAndHelpAreWhatAUserOfOtherToolsExpects() throws {
        for tool in ["vaultctl", "vaultfs"] {
            for flag in ["--version", "-V"] {
                XCTAssertEqual(try mustRun([productPath(tool), flag]), "\(tool) 0.1.0\n", "\(tool) \(flag)")
            }
        }
        for (verb, instead) in [
            ("snapshots", "vaultctl points"), ("check", "vaultctl verify"), ("forget", "vaultctl delete"),
        ] {
            let result = try ctl.attempt([verb])
            XCTAssertEqual(result.status, 64, result.stderr)
            XCTAssertTrue(result.stderr.contains("'\(instead)"), result.stderr)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        }
        let help = try ctl.run("server", "show", "--help")
        XCTAssertTrue(help.contains("REPOSITORY OPTIONS:"), help)
        XCTAssertTrue(help.contains("<name>") && help.contains("The server."), help)
        XCTAssertTrue(try ctl.run("--help").contains("--generate-completion-script"))
    }

    /// `points` shows each disk's size, what the point added, and with --unique what deleting
    /// it alone would free: gc frees exactly that once it is deleted and purged.
    func testSizesSayWhatEachPointHoldsAddedAndWouldFree() throws {
        try ctl.run("backup", "web", "--name", "one")
        try disk.write("new.bin", pseudoRandomBytes(600_000, seed: 5))
        try ctl.run("backup", "web", "--name", "two")
        let points = try ctl.json("points", "--unique")
        let one = try XCTUnwrap(points.first { $0["name"] as? String == "one" })
        let two = try XCTUnwrap(points.first { $0["name"] as? String == "two" })
        for point in [one, two] { XCTAssertEqual(point["diskBytes"] as? Int, 16 << 20) }
        let added = (one: one["addedBytes"] as? Int ?? 0, two: two["addedBytes"] as? Int ?? 0)
        XCTAssertGreaterThan(added.one, 0)
        XCTAssertGreaterThan(added.two, 0)
        let unique = try XCTUnwrap(two["uniqueBytes"] as? Int)
        XCTAssertGreaterThan(unique, 0)
        XCTAssertLessThanOrEqual(unique, added.two, "what only it holds, it added")
        XCTAssertNil(try ctl.json("points").first?["uniqueBytes"], "only asked for with --unique")
        XCTAssertTrue(try ctl.run("points", "--unique").contains("UNIQUE"))

        let stored = {
            try mustRun(["find", self.scratch.file("repo/chunks"), "-type", "f", "-printf", "%s\n"])
                .split(separator: "\n").compactMap { Int($0) }.reduce(0, +)
        }
        let before = try stored()
        try ctl.run("delete", "web/two")
        try ctl.run("purge") // collects too
        try ctl.run("gc")
        XCTAssertEqual(before - (try stored()), unique)
        // A purged point is not Active in the history.
        let history = try ctl.json("history")
        XCTAssertEqual(history.first { $0["name"] as? String == "two" }?["status"] as? String, "Purged")
    }

    func testEveryTakesTheDurationGrammarOfTheOtherOptions() throws {
        try ctl.run(
            "policy", "set", "prod", "--start", "01:00", "--every", "1d", "--incrementals", "1", "--keep-fulls", "2")
        let policy = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(try ctl.run("policy", "show", "prod", "--json").utf8))
                as? [String: Any])
        XCTAssertEqual(policy["everyHours"] as? Int, 24)
        try assertRefused(
            [
                "policy", "set", "prod", "--start", "01:00", "--every", "90m", "--incrementals", "1", "--keep-fulls",
                "2",
            ],
            mentions: "bad --every '90m'")
    }

    func testFailedExportLeavesAnExistingFileAlone() throws {
        try ctl.run("backup", "web", "--name", "one")
        let repository = try openRepository(ctl.repository)
        let point = try repository.catalog.point(matching: "web/one")
        guard
            case .data(let hash)? = try repository.flatten(point: point.id, disk: "root").refs.first(where: {
                $0 != .zero
            })
        else {
            return XCTFail("no data chunk")
        }
        unlink("\(ctl.repository)/chunks/\(hash.hex.prefix(2))/\(hash.hex)")
        let out = scratch.file("precious.img")
        try "keep me".write(toFile: out, atomically: true, encoding: .utf8)
        let result = try ctl.attempt(["export", "web/one", "-o", out])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("missing from the store"), result.stderr)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "keep me")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + ".vaultfs-partial"))
    }

    func testBlockDeviceDiskIsBackedUpAndRestoredToADevice() throws {
        let loop = try mustRun(["losetup", "--find", "--show", disk.path]).trimmingCharacters(
            in: .whitespacesAndNewlines)
        defer { _ = try? runCommand(["losetup", "-d", loop], timeout: 10) }
        try ctl.run("server", "add", "metal", "--vault", "prod", "--disk", "vda=\(loop)")
        try ctl.run("backup", "metal", "--name", "dev")
        let target = scratch.file("target.img")
        XCTAssertTrue(FileManager.default.createFile(atPath: target, contents: Data(count: 16 << 20)))
        let targetLoop = try mustRun(["losetup", "--find", "--show", target]).trimmingCharacters(
            in: .whitespacesAndNewlines)
        defer { _ = try? runCommand(["losetup", "-d", targetLoop], timeout: 10) }
        try ctl.run("export", "metal/dev", "-o", targetLoop)
        try mustRun(["cmp", targetLoop, disk.path])
    }

    func testInterruptedBackupIsRecordedAsCancelled() throws {
        try ctl.run(
            "server", "add", "slow", "--vault", "prod", "--disk", "root=\(disk.path)", "--freeze-command", "sleep 2")
        let backup = try ctl.start(["backup", "slow", "--name", "stopped"])
        defer { if backup.isRunning { kill(backup.processIdentifier, SIGKILL) } }
        XCTAssertTrue(
            try eventually(timeout: 10) { try ctl.json("points").contains { $0["status"] as? String == "Creating" } })
        kill(backup.processIdentifier, SIGINT)
        XCTAssertTrue(eventually(timeout: 20) { !backup.isRunning })
        XCTAssertNotEqual(backup.terminationStatus, 0)
        let entry = try XCTUnwrap(ctl.json("history").first)
        XCTAssertEqual(entry["status"] as? String, "Error")
        XCTAssertTrue((entry["error"] as? String)?.contains("cancelled") == true, "\(entry)")
    }

    /// Parses a command's `--json` output.
    private func json(_ arguments: String...) throws -> Any {
        let text = try ctl.run(arguments + ["--json"])
        return try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    func testEveryReportingCommandGivesJSONWithWhatItsTableShows() throws {
        // backup: the points made, as `points --json` shows them.
        let made = try XCTUnwrap(try json("backup", "web", "--name", "first") as? [[String: Any]])
        XCTAssertEqual(made.count, 1)
        let id = try XCTUnwrap(made[0]["id"] as? String)
        let listed = try XCTUnwrap(try json("points") as? [[String: Any]])
        XCTAssertEqual(Set(made[0].keys), Set(listed[0].keys))
        XCTAssertEqual(listed[0]["id"] as? String, id)
        for key in ["id", "server", "name", "type", "scheduleType", "status", "estimatedSize", "time", "location"] {
            XCTAssertNotNil(made[0][key], key)
        }
        // history: the same point object, one per attempt.
        let history = try XCTUnwrap(try json("history") as? [[String: Any]])
        XCTAssertEqual(history.count, 1)
        XCTAssertEqual(NSDictionary(dictionary: history[0]), NSDictionary(dictionary: listed[0]))
        // vault list: the server count the table shows, as the servers' names.
        let vaults = try XCTUnwrap(try json("vault", "list") as? [[String: Any]])
        XCTAssertEqual(vaults.first?["vault"] as? String, "prod")
        XCTAssertEqual(vaults.first?["servers"] as? [String], ["web"])
        XCTAssertNotNil((vaults.first?["policy"] as? [String: Any])?["enabled"])
        XCTAssertEqual((try json("vault", "show", "prod") as? [String: Any])?["servers"] as? [String], ["web"])
        // server list and show: vault and disks.
        let servers = try XCTUnwrap(try json("server", "list") as? [[String: Any]])
        XCTAssertEqual(servers.first?["server"] as? String, "web")
        XCTAssertEqual(servers.first?["vault"] as? String, "prod")
        XCTAssertEqual((servers.first?["disks"] as? [[String: Any]])?.first?["name"] as? String, "root")
        let shown = try XCTUnwrap(try json("server", "show", "web") as? [String: Any])
        XCTAssertEqual((shown["disks"] as? [[String: Any]])?.first?["path"] as? String, disk.path)
        // verify: counts and problems.
        let verified = try XCTUnwrap(try json("verify") as? [String: Any])
        XCTAssertEqual(verified["clean"] as? Bool, true)
        XCTAssertEqual(verified["points"] as? Int, 1)
        XCTAssertGreaterThan(verified["chunks"] as? Int ?? 0, 0)
        // export: what was written where.
        let exported = try XCTUnwrap(try json("export", id, "-o", scratch.file("out.img")) as? [String: Any])
        XCTAssertEqual(exported["size"] as? Int, 16 << 20)
        XCTAssertEqual(exported["disk"] as? String, "root")
        XCTAssertEqual(try readBytes(scratch.file("out.img")), try readBytes(disk.path))
        // delete, undelete and purge: the point after the change.
        let deleted = try XCTUnwrap(try json("delete", id) as? [String: Any])
        XCTAssertEqual(deleted["deletion"] as? String, "Soft deleted")
        XCTAssertEqual((try json("undelete", id) as? [String: Any])?["deletion"] as? String, "")
        _ = try json("delete", id)
        let purge = try XCTUnwrap(try json("purge") as? [String: Any])
        let purged = try XCTUnwrap(purge["purged"] as? [[String: Any]])
        XCTAssertEqual(purged.map { $0["id"] as? String }, [id])
        // The collection after it ran: no problem to report.
        XCTAssertNil(purge["garbageCollectionProblem"])
        // retention apply: per vault, what it deleted.
        let retention = try XCTUnwrap(try json("retention", "apply", "--dry-run") as? [[String: Any]])
        XCTAssertEqual(retention.first?["vault"] as? String, "prod")
        XCTAssertEqual(retention.first?["dryRun"] as? Bool, true)
        XCTAssertEqual((retention.first?["points"] as? [Any])?.count, 0)
        // gc and files ls already had theirs; they still parse.
        XCTAssertNotNil(try json("gc") as? [String: Any])
    }

    func testProgressGoesToATerminalAsOneClearedLineAndToScriptsAsJSON() throws {
        let vaultctl = productPath("vaultctl")
        let env = ["VAULT_REPO": ctl.repository]
        // On a terminal (script gives the command one): a line redrawn in place, naming the
        // server, point and disk, and cleared before the result is printed.
        let tty = try mustRun(
            ["script", "-qec", "\(vaultctl) backup web --name on-tty", "/dev/null"], environment: env)
        XCTAssertTrue(tty.contains("\r\u{1B}[Kweb/on-tty disk root: "), tty)
        XCTAssertTrue(tty.contains("\r\u{1B}[Kweb/on-tty: full point"), tty)
        let verify = try mustRun(["script", "-qec", "\(vaultctl) verify", "/dev/null"], environment: env)
        XCTAssertTrue(verify.contains(" chunks"), verify)
        // Through a pipe: no progress at all.
        let piped = try ctl.attempt(["backup", "web", "--name", "piped"])
        XCTAssertEqual(piped.status, 0)
        XCTAssertFalse(piped.stderr.contains("\r"), piped.stderr)
        XCTAssertEqual(piped.stderr, "")
        // --progress json: one event per line on stderr, the result alone on stdout.
        for arguments in [
            ["backup", "web", "--name", "as-json"], ["export", "web/as-json", "-o", scratch.file("e.img")], ["verify"],
            ["gc", "--dry-run"],
        ] {
            let result = try ctl.attempt(arguments + ["--progress", "json"])
            XCTAssertEqual(result.status, 0, result.stderr)
            let events = result.stderr.split(separator: "\n").filter { $0.hasPrefix("{") }
            XCTAssertFalse(events.isEmpty, "\(arguments): \(result.stderr)")
            for event in events {
                let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])
                XCTAssertNotNil(object["label"] as? String)
                XCTAssertNotNil(object["done"] as? Int)
                XCTAssertNotNil(object["total"] as? Int)
                XCTAssertTrue(["bytes", "chunks"].contains(object["unit"] as? String ?? ""))
            }
        }
    }

    /// The machine's libcurl.so.4, as the dynamic loader finds it.
    private func libcurlPath() throws -> String {
        let found = try mustRun(["ldconfig", "-p"]).split(separator: "\n").first { $0.contains("libcurl.so.4 ") }
        guard let library = found?.components(separatedBy: " => ").last else {
            throw XCTSkip("no libcurl.so.4 on this machine")
        }
        return library
    }

    /// vaultctl with `replacement` bind-mounted over `library` (the machine's libcurl.so.4) in a
    /// mount namespace of its own: the mount dies with the namespace when the command ends,
    /// whatever happens. Exit status 99 says the mount could not be made.
    private func vaultctl(
        replacing library: String, with replacement: String, _ arguments: [String],
        environment: [String: String] = [:]
    ) throws -> CommandResult {
        let mask = "mount --bind \(replacement) \(library) || exit 99; exec \"$@\""
        var variables = ["VAULT_REPO": ctl.repository]
        if Vaultctl.encryptsByDefault {
            variables["VAULT_PASSPHRASE"] = ProcessInfo.processInfo.environment["VAULT_PASSPHRASE"]
        }
        variables.merge(environment) { _, new in new }
        return try runCommand(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", mask, "sh", productPath("vaultctl")]
                + arguments,
            environment: variables)
    }

    /// An S3 repository whose endpoint nobody answers, for tests that must fail before any request.
    private let unansweredS3 = (
        arguments: ["points", "--repo", "s3://some-bucket/repo"],
        environment: [
            "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret",
            "VAULT_S3_ENDPOINT": "http://127.0.0.1:9",
        ]
    )

    /// libcurl is loaded only for a repository in a bucket. With it unusable (an empty file
    /// bind-mounted over it, in a mount namespace of the command's own), a local repository
    /// still backs up and lists, and an S3 one is refused in one line saying what to install.
    func testWithoutLibcurlLocalRepositoriesWorkAndS3SaysWhatToInstall() throws {
        let library = try libcurlPath()
        func withoutLibcurl(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
            try vaultctl(replacing: library, with: "/dev/null", arguments, environment: environment)
        }
        let backup = try withoutLibcurl(["backup", "web", "--name", "without-curl"])
        guard backup.status != 99 else { return XCTFail("the test could not hide libcurl: \(backup.stderr)") }
        XCTAssertEqual(backup.status, 0, backup.stderr)
        let points = try withoutLibcurl(["points"])
        XCTAssertEqual(points.status, 0, points.stderr)
        XCTAssertTrue(points.stdout.contains("without-curl"), points.stdout)

        let s3 = try withoutLibcurl(unansweredS3.arguments, environment: unansweredS3.environment)
        XCTAssertNotEqual(s3.status, 0)
        XCTAssertEqual(s3.stderr.split(separator: "\n").count, 1, s3.stderr)
        XCTAssertTrue(s3.stderr.contains("cannot load libcurl") && s3.stderr.contains("install libcurl4"), s3.stderr)
        // Outside the namespace libcurl is where it was.
        XCTAssertTrue(FileManager.default.contents(atPath: library).map { $0.count > 0 } ?? false)
    }

    /// A libcurl older than 7.75, which would ignore CURLOPT_AWS_SIGV4 and send requests
    /// unsigned, is refused by its version in one line before any request: a library with
    /// libcurl's functions whose curl_version_info says 7.74.0, put in libcurl.so.4's place.
    func testALibcurlTooOldToSignRequestsIsRefusedInOneLine() throws {
        let curl = try libcurlPath()
        let source = scratch.file("oldcurl.c")
        let library = scratch.file("libcurl-7.74.so")
        let functions = [
            "curl_global_init", "curl_easy_init", "curl_easy_cleanup", "curl_easy_reset", "curl_easy_setopt",
            "curl_easy_perform", "curl_easy_getinfo", "curl_easy_strerror", "curl_slist_append", "curl_slist_free_all",
        ]
        // The first fields of curl_version_info_data: age, version, version_num.
        let text = """
            struct version { int age; const char *version; unsigned int version_num; };
            static struct version old = { 9, "7.74.0", 0x074A00 };
            void *curl_version_info(int age) { (void)age; return &old; }
            \(functions.map { "void *\($0)(void) { return 0; }" }.joined(separator: "\n"))

            """
        try text.write(toFile: source, atomically: true, encoding: .utf8)
        let compiled = try runCommand([
            "sh", "-c",
            "for cc in cc clang; do command -v $cc >/dev/null && exec $cc -shared -fPIC -o \"$1\" \"$2\"; done; exit 127",
            "sh", library, source,
        ])
        guard compiled.status != 127 else { throw XCTSkip("no C compiler to build a stand-in libcurl") }
        XCTAssertEqual(compiled.status, 0, compiled.stderr)

        let s3 = try vaultctl(
            replacing: curl, with: library, unansweredS3.arguments, environment: unansweredS3.environment)
        guard s3.status != 99 else { return XCTFail("the test could not replace libcurl: \(s3.stderr)") }
        XCTAssertNotEqual(s3.status, 0)
        XCTAssertEqual(s3.stderr.split(separator: "\n").count, 1, s3.stderr)
        XCTAssertTrue(
            s3.stderr.contains("libcurl 7.74.0 cannot sign S3 requests: libcurl 7.75.0 or later is needed"), s3.stderr)
    }
}
