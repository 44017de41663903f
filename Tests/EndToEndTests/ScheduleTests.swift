import Foundation
import TestSupport
import VaultCore
import XCTest

/// The seed 000 schedule, end to end through `vaultctl schedule run --once --now`.
final class ScheduleTests: XCTestCase {
    func testSeed000ScheduleKeepsTwoChainsAndManualPoints() throws {
        let scratch = Scratch("seed000")
        let ctl = Vaultctl(repository: scratch.file("repo"))
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M", files: ["etc/hostname": Array("web\n".utf8)])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run("vault", "create", "prod")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        try ctl.run(
            "policy", "set", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "2",
            "--now", "2030-01-01T12:00")

        let start = Units.parseTime("2030-01-01T16:00")!
        var expectedBytes: [String: String] = [:]
        var slotNames: [String] = []
        for k in 0..<14 {
            let slot = start.addingTimeInterval(Double(k) * 4 * 3600)
            try disk.write("data/slot-\(k).bin", pseudoRandomBytes(150_000 + k * 7000, seed: UInt64(100 + k)))
            let name = Units.compactUTC(slot)
            slotNames.append(name)
            let snapshot = scratch.file("as-at-\(name).img")
            try disk.snapshot(to: snapshot)
            expectedBytes[name] = snapshot
            try ctl.run("schedule", "run", "--once", "--now", isoLocal(slot))
            // Between slots nothing is due.
            XCTAssertTrue(
                try ctl.run("schedule", "run", "--once", "--now", isoLocal(slot.addingTimeInterval(3600))).hasSuffix(
                    "nothing is due\n"))
            if k == 3 {
                try ctl.run("backup", "web", "--name", "keepme")
                expectedBytes["keepme"] = snapshot
            }
        }

        let points = try ctl.json("points")
        let remaining = points.map { "\($0["name"]!):\($0["type"]!):\($0["scheduleType"]!)" }.sorted()
        var expected = ["keepme:Full:Manual"]
        for k in 5..<14 { expected.append("\(slotNames[k]):\(k == 5 || k == 10 ? "Full" : "Incremental"):Policy") }
        XCTAssertEqual(remaining, expected.sorted())

        let history = try ctl.json("history")
        XCTAssertEqual(history.count, 15)
        let deleted = history.filter { $0["deletion"] as? String == "Deleted" }.map { $0["name"] as! String }
        XCTAssertEqual(deleted.sorted(), Array(slotNames[0..<5]).sorted())
        // Deleted for good by retention: Purged, not Active; the others Active.
        XCTAssertTrue(
            history.allSatisfy {
                $0["status"] as? String == ($0["deletion"] as? String == "Deleted" ? "Purged" : "Active")
            })
        XCTAssertEqual(history.filter { ($0["deletion"] as? String)?.isEmpty == true }.count, 10)

        for point in points {
            let name = point["name"] as! String
            let out = scratch.file("export-\(name).img")
            try ctl.run("export", "web/\(name)", "--disk", "root", "-o", out)
            try mustRun(["cmp", out, expectedBytes[name]!])
            unlink(out)
        }
    }

    func testMissedSlotsRunOnceWhenTheSchedulerComesBack() throws {
        let scratch = Scratch("missed")
        let ctl = Vaultctl(repository: scratch.file("repo"))
        let disk = try Ext4Image.make(at: scratch.file("web.img"), size: "16M", files: ["a": [1, 2, 3]])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run(
            "vault", "create", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "2")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        // 13:00 five days on: a slot (16:00 every 4 h: 12:00) is missed, and the minute after
        // it crosses no other slot whatever the time the test runs.
        let later = Calendar.current.date(
            byAdding: .hour, value: 5 * 24 + 13, to: Calendar.current.startOfDay(for: Date()))!
        try ctl.run("schedule", "run", "--once", "--now", isoLocal(later))
        try ctl.run("schedule", "run", "--once", "--now", isoLocal(later.addingTimeInterval(60)))
        let points = try ctl.json("points")
        XCTAssertEqual(points.count, 1)
        XCTAssertEqual(points.first?["type"] as? String, "Full")
    }

    /// A host's scheduler backs up the servers set up on it and leaves the others to their
    /// hosts; a host with none set up at all (upgraded from before disks were host
    /// configuration) fails every due server, naming `server adopt --all`, and reads nothing.
    func testTheSchedulerBacksUpOnlyTheServersSetUpOnItsHost() throws {
        let scratch = Scratch("sched-host")
        // Each host its own configuration, not the run's shared one (other tests' servers).
        let ctl = Vaultctl(repository: scratch.file("repo"), environment: ["VAULT_CONFIG_DIR": scratch.file("etc")])
        let webDisk = try Ext4Image.make(at: scratch.file("web.img"), size: "16M", files: ["a": [1]])
        let dbDisk = try Ext4Image.make(at: scratch.file("db.img"), size: "16M", files: ["b": [2]])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run(
            "vault", "create", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "2")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(webDisk.path)")
        // db is set up on another host, whose configuration is its own.
        let other = Vaultctl(repository: ctl.repository, environment: ["VAULT_CONFIG_DIR": scratch.file("other-etc")])
        try other.run("server", "add", "db", "--vault", "prod", "--disk", "root=\(dbDisk.path)")

        let upgraded = Vaultctl(
            repository: ctl.repository, environment: ["VAULT_CONFIG_DIR": scratch.file("upgraded-etc")])
        let none = try upgraded.attempt(["schedule", "run", "--once", "--now", "2030-01-01T16:00"])
        XCTAssertEqual(none.status, 1, none.stderr)
        XCTAssertTrue(
            none.stderr.contains("2 due job(s) failed") && none.stderr.contains("vaultctl server adopt db"), none.stderr
        )
        XCTAssertTrue(try ctl.json("history").isEmpty, "nothing was read or recorded")

        let web = try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T16:00")
        XCTAssertTrue(web.contains("db : skipped: not set up on this host"), web)
        // A timer's next runs in the same slot do not say it again each minute.
        let later = try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T16:05")
        XCTAssertFalse(later.contains("skipped"), later)
        XCTAssertEqual(try ctl.json("points").map { $0["server"] as? String }, ["web"])
        try other.run("schedule", "run", "--once", "--now", "2030-01-01T16:00")
        XCTAssertEqual(Set(try ctl.json("points").compactMap { $0["server"] as? String }), ["web", "db"])
    }

    func testFailedSlotIsRecordedAsErrorAndNextSlotStartsAFull() throws {
        let scratch = Scratch("failslot")
        let ctl = Vaultctl(repository: scratch.file("repo"))
        let disk = try Ext4Image.make(at: scratch.file("web.img"), size: "16M", files: ["a": [1]])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run("vault", "create", "prod")
        try ctl.run(
            "policy", "set", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "2",
            "--now", "2030-01-01T12:00")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        try FileManager.default.moveItem(atPath: disk.path, toPath: disk.path + ".away")
        // --once exits 1 and names what failed, so cron or a systemd timer sees it.
        let failed = try ctl.attempt(["schedule", "run", "--once", "--now", "2030-01-01T16:00"])
        XCTAssertEqual(failed.status, 1, failed.stderr)
        XCTAssertTrue(
            failed.stderr.contains(" web full ") && failed.stderr.contains(": failed: ")
                && failed.stderr.contains("1 due job(s) failed"), failed.stderr)
        // Said once, on stderr only.
        XCTAssertEqual(failed.stderr.split(separator: "\n").filter { $0.contains("web") }.count, 1, failed.stderr)
        XCTAssertFalse(failed.stdout.contains("web"), failed.stdout)
        // The next minute's run has nothing to do, and still exits 1: the slot failed.
        let later = try ctl.attempt(["schedule", "run", "--once", "--now", "2030-01-01T16:01"])
        XCTAssertEqual(later.status, 1, later.stderr)
        XCTAssertTrue(later.stderr.contains("web: failed at its slot"), later.stderr)
        try FileManager.default.moveItem(atPath: disk.path + ".away", toPath: disk.path)
        try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T20:00")
        XCTAssertEqual(try ctl.attempt(["schedule", "run", "--once", "--now", "2030-01-01T20:01"]).status, 0)
        let history = try ctl.json("history")
        XCTAssertEqual(history.map { $0["status"] as! String }, ["Error", "Active"])
        XCTAssertEqual(history.map { $0["type"] as! String }, ["Full", "Full"])
    }

    func testSigtermStopsTheSchedulerAndFailsTheRunningBackupCleanly() throws {
        let scratch = Scratch("sched-stop")
        let ctl = Vaultctl(repository: scratch.file("repo"))
        let disk = try Ext4Image.make(at: scratch.file("web.img"), size: "16M", files: ["a": [1]])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        let anHourAgo = Date().addingTimeInterval(-3600)
        let hhmm = DateFormatter()
        hhmm.dateFormat = "HH:mm"
        try ctl.run("vault", "create", "prod")
        try ctl.run(
            "policy", "set", "prod", "--start", hhmm.string(from: anHourAgo), "--every", "1h", "--incrementals", "2",
            "--keep-fulls", "2", "--now", isoLocal(anHourAgo))
        try ctl.run(
            "server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)", "--freeze-command", "sleep 2")
        let out = scratch.file("scheduler.out")
        XCTAssertTrue(FileManager.default.createFile(atPath: out, contents: nil))
        let scheduler = try ctl.start(["schedule", "run"], output: out)
        defer { if scheduler.isRunning { kill(scheduler.processIdentifier, SIGKILL) } }
        XCTAssertTrue(
            try eventually(timeout: 15) { try ctl.json("points").contains { $0["status"] as? String == "Creating" } })
        kill(scheduler.processIdentifier, SIGTERM)
        XCTAssertTrue(eventually(timeout: 20) { !scheduler.isRunning })
        XCTAssertEqual(scheduler.terminationStatus, 0)
        XCTAssertTrue(try String(contentsOfFile: out, encoding: .utf8).contains("scheduler stopped"))
        let history = try ctl.json("history")
        XCTAssertEqual(history.count, 1)
        XCTAssertEqual(history.first?["status"] as? String, "Error")
        XCTAssertTrue((history.first?["error"] as? String)?.contains("cancelled") == true, "\(history)")

        // The cancelled slot was not done: the scheduler runs it when it comes back.
        try ctl.run("schedule", "run", "--once")
        XCTAssertEqual(try ctl.json("history").map { $0["status"] as! String }, ["Error", "Active"])
    }

    func testServerMovedToAnotherVaultStartsAFreshChainThere() throws {
        let scratch = Scratch("moved")
        let ctl = Vaultctl(repository: scratch.file("repo"))
        let disk = try Ext4Image.make(at: scratch.file("web.img"), size: "16M", files: ["a": [1]])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        for vault in ["a", "b"] {
            try ctl.run("vault", "create", vault)
            try ctl.run(
                "policy", "set", vault, "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "1",
                "--now", "2030-01-01T12:00")
        }
        try ctl.run("server", "add", "web", "--vault", "a", "--disk", "root=\(disk.path)")
        try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T16:00")
        try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T20:00")
        try ctl.run("server", "move", "web", "--vault", "b")
        try ctl.run("schedule", "run", "--once", "--now", "2030-01-02T00:00")
        let points = try ctl.json("points").map { "\($0["vault"]!):\($0["type"]!)" }
        XCTAssertEqual(points, ["a:Full", "a:Incremental", "b:Full"])
    }

    func testVerifyFindsADamagedChunkAndThePointsThatUseIt() throws {
        let scratch = Scratch("verify")
        let ctl = Vaultctl(repository: scratch.file("repo"))
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "16M", files: ["a": pseudoRandomBytes(400_000, seed: 3)])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run(
            "vault", "create", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "2")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        try ctl.run(
            "policy", "set", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "2",
            "--now", "2030-01-01T12:00")
        try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T16:00")
        try disk.write("b", pseudoRandomBytes(100_000, seed: 4))
        try ctl.run("schedule", "run", "--once", "--now", "2030-01-01T20:00")
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))

        // Damage a chunk only the full holds; the incremental built on it is affected too.
        let repository = try openRepository(ctl.repository)
        let full = try repository.catalog.point(matching: "web/20300101T160000Z")
        let inc = try repository.catalog.point(matching: "web/20300101T200000Z")
        let rewritten = Set(try repository.maps.read(point: inc.id, disk: "root").entries.map(\.position))
        let fullEntries = try repository.maps.read(point: full.id, disk: "root").entries
        let counts = Dictionary(fullEntries.map { ($0.ref, 1) }, uniquingKeysWith: +)
        let victim = try XCTUnwrap(
            fullEntries.lazy.compactMap { entry -> ChunkHash? in
                guard case .data(let hash) = entry.ref, !rewritten.contains(entry.position), counts[entry.ref] == 1
                else { return nil }
                return hash
            }.first)
        let file = "\(ctl.repository)/chunks/\(victim.hex.prefix(2))/\(victim.hex)"
        chmod(file, 0o644)
        var bytes = try readBytes(file)
        bytes[60] ^= 0xff
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data(bytes)))

        let result = try ctl.attempt(["verify"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stdout.contains("damaged: chunk \(victim.hex)"), result.stdout)
        XCTAssertTrue(result.stdout.contains("affected point: web/20300101T160000Z"), result.stdout)
        XCTAssertTrue(result.stdout.contains("affected point: web/20300101T200000Z"), result.stdout)
    }
}
