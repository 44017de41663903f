import Foundation
import Synchronization
import TestSupport
import VaultCore
import XCTest

/// Everything at once, for a bounded time: the scheduler and manual backups of one server,
/// mkdir backups of another through the mount, deletions, purges and collections, and two
/// readers comparing whole images through the mount. Then every point is compared byte for
/// byte and `verify` must pass. `VAULTFS_SOAK_SECONDS` sets the length (default 120;
/// `make soak` runs 900).
final class SoakTests: XCTestCase {
    /// What each point must read as, and what the test itself deleted.
    private final class Ledger: Sendable {
        private struct State {
            var expected: [String: String] = [:]
            var deleted = Set<String>()
            var problems: [String] = []
            var comparisons = 0
        }

        private let state = Mutex(State())

        var problems: [String] { state.withLock { $0.problems } }
        var comparisons: Int { state.withLock { $0.comparisons } }

        func expect(_ key: String, _ copy: String) { state.withLock { $0.expected[key] = copy } }
        func copy(of key: String) -> String? { state.withLock { $0.expected[key] } }
        func markDeleted(_ key: String) { _ = state.withLock { $0.deleted.insert(key) } }
        func wasDeleted(_ key: String) -> Bool { state.withLock { $0.deleted.contains(key) } }
        func problem(_ text: String) { state.withLock { $0.problems.append(text) } }
        func compared() { state.withLock { $0.comparisons += 1 } }
    }

    func testEverythingAtOnceLosesNothingAndReadsNoWrongByte() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["VAULTFS_SOAK_SECONDS"] ?? "") ?? 120
        let scratch = Scratch("soak")
        let ctl = Vaultctl(repository: scratch.file("repo"))
        let web = try Ext4Image.make(
            at: scratch.file("web.img"), size: "16M", files: ["etc/hostname": Array("web\n".utf8)])
        let db = try Ext4Image.make(
            at: scratch.file("db.img"), size: "16M", files: ["etc/hostname": Array("db\n".utf8)])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run(
            "vault", "create", "prod", "--start", "00:00", "--every", "4h", "--incrementals", "2", "--keep-fulls", "2")
        try ctl.run(
            "policy", "set", "prod", "--start", "00:00", "--every", "4h", "--incrementals", "2", "--keep-fulls", "2",
            "--now", "2030-01-01T00:00")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(web.path)")
        try ctl.run("vault", "create", "adhoc")
        try ctl.run("server", "add", "db", "--vault", "adhoc", "--disk", "root=\(db.path)")
        let mount = try MountedRepository(repository: ctl.repository, at: scratch.file("mnt"))
        defer { mount.unmount() }

        let ledger = Ledger()
        let deadline = Date().addingTimeInterval(seconds)
        var policySlots: [String] = []
        func snapshot(_ image: Ext4Image, _ label: String) throws -> String {
            let copy = scratch.file("copy-\(label).img")
            try image.snapshot(to: copy)
            return copy
        }
        let group = DispatchGroup()
        func loop(_ name: String, _ body: @escaping (Int) throws -> Void) {
            group.enter()
            // Each loop's body runs on its own thread only; what the loops share (the ledger,
            // the slot list) is behind locks.
            nonisolated(unsafe) let body = body
            Thread.detachNewThread {
                defer { group.leave() }
                var round = 0
                while Date() < deadline {
                    do { try body(round) } catch { ledger.problem("\(name) round \(round): \(error)") }
                    round += 1
                }
            }
        }

        // web: scheduler slots (retention deletes old chains) and manual backups, in turn.
        let slotLock = NSLock()
        loop("web") { round in
            try web.write("data/w\(round % 7).bin", pseudoRandomBytes(200_000, seed: UInt64(round + 1)))
            if round % 2 == 0 {
                let slot = Units.parseTime("2030-01-01T04:00Z")!.addingTimeInterval(Double(round / 2) * 4 * 3600)
                let name = Units.compactUTC(slot)
                ledger.expect("web/\(name)", try snapshot(web, "web-\(name)"))
                _ = try ctl.attempt(["schedule", "run", "--once", "--now", isoLocal(slot)], timeout: 120)
                slotLock.withLock { policySlots.append(name) }
            } else {
                ledger.expect("web/m\(round)", try snapshot(web, "web-m\(round)"))
                _ = try ctl.attempt(["backup", "web", "--name", "m\(round)"], timeout: 120)
            }
        }
        // db: backups now by mkdir in the mount.
        loop("db") { round in
            try db.write("data/d\(round % 5).bin", pseudoRandomBytes(150_000, seed: UInt64(9000 + round)))
            ledger.expect("db/d\(round)", try snapshot(db, "db-d\(round)"))
            let made = try runCommand(["mkdir", mount.path("adhoc/db/d\(round)")], timeout: 30)
            guard made.status == 0 else {
                usleep(300_000)
                return
            }
            _ = eventually(timeout: 60) {
                ((try? ctl.json("points", "db")) ?? []).contains {
                    $0["name"] as? String == "d\(round)" && $0["status"] as? String != "Creating"
                }
            }
        }
        // Deletions, purges and collections.
        loop("deleter") { round in
            usleep(700_000)
            let manual = try ctl.json("points", "web").filter { ($0["name"] as? String ?? "").hasPrefix("m") }
            if manual.count > 2, let victim = manual.first?["name"] as? String {
                if try ctl.attempt(["delete", "web/\(victim)"]).status == 0 { ledger.markDeleted("web/\(victim)") }
            }
            _ = try ctl.attempt([round % 2 == 0 ? "purge" : "gc"], timeout: 120)
        }
        // Two readers comparing whole images through the mount, deletions or not.
        for reader in 0..<2 {
            loop("reader\(reader)") { _ in
                let points = try ctl.json("points").filter { $0["status"] as? String == "Active" }
                guard let point = points.randomElement(), let server = point["server"] as? String,
                    let name = point["name"] as? String, let copy = ledger.copy(of: "\(server)/\(name)")
                else {
                    usleep(200_000)
                    return
                }
                let image = mount.path("\(server == "db" ? "adhoc" : "prod")/\(server)/\(name)/root.img")
                let result = try runCommand(["cmp", image, copy], timeout: 60)
                if result.status == 0 {
                    ledger.compared()
                } else if FileManager.default.fileExists(atPath: copy), !result.stderr.contains("No such file") {
                    ledger.problem("\(server)/\(name) read through the mount differs: \(result.stdout)\(result.stderr)")
                }
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + seconds + 300), .success, "the soak did not end")
        XCTAssertEqual(ledger.problems, [])
        XCTAssertGreaterThan(ledger.comparisons, 5)

        // Every point there is whole, and nothing a policy keeps was lost.
        let verify = try ctl.attempt(["verify"], timeout: 300)
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        let points = try ctl.json("points")
        for point in points where point["status"] as? String == "Active" {
            let key = "\(point["server"]!)/\(point["name"]!)"
            let copy = try XCTUnwrap(ledger.copy(of: key), key)
            let out = scratch.file("final.img")
            try ctl.run("export", key, "-o", out)
            XCTAssertEqual(try runCommand(["cmp", out, copy]).status, 0, "\(key) differs")
            try mustRun(["cmp", mount.path("\(point["vault"]!)/\(key)/root.img"), copy], timeout: 60)
        }
        let shown = Set(points.map { "\($0["server"]!)/\($0["name"]!)" })
        // The two newest chains of web's slots (a full and two incrementals each) are kept.
        let slots = slotLock.withLock { policySlots }
        let kept = slots.count % 3 == 0 ? 6 : slots.count % 3 + 3
        for name in slots.suffix(kept) {
            XCTAssertTrue(shown.contains("web/\(name)"), "retention lost web/\(name), which the policy keeps")
        }
        let history = try ctl.json("history")
        for entry in history
        where entry["status"] as? String == "Active" && (entry["deletion"] as? String ?? "").isEmpty {
            let key = "\(entry["server"]!)/\(entry["name"]!)"
            XCTAssertTrue(shown.contains(key), "\(key) is Active in history but not listed")
            XCTAssertFalse(ledger.wasDeleted(key), "\(key) was deleted but shows")
        }
        print(
            "soak: \(Int(seconds)) s, \(ledger.comparisons) whole-image comparisons through the mount, \(points.count) points kept"
        )
    }
}
