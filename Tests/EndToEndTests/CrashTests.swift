import Foundation
import TestSupport
import VaultCore
import XCTest

/// Backups, retention, purge and garbage collection killed with SIGKILL at exact moments
/// (`VAULTFS_FAULT`): what was stored stays whole, nothing half-made shows as Active, and
/// the next collection reclaims everything a killed run wrote.
final class CrashTests: XCTestCase {
    var scratch: Scratch!
    var ctl: Vaultctl!
    var root: Ext4Image!
    var data: String!
    /// Point name -> copies of the disks as they were (disk name -> path).
    var asItWas: [String: [String: String]] = [:]

    override func setUpWithError() throws {
        scratch = Scratch("crash")
        ctl = Vaultctl(repository: scratch.file("repo"))
        root = try Ext4Image.make(at: scratch.file("root.img"), size: "16M", files: ["etc/hostname": Array("web\n".utf8)])
        data = scratch.file("data.img")
        FileManager.default.createFile(atPath: data, contents: Data(pseudoRandomBytes(6 << 20, seed: 3)))
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run("vault", "create", "prod")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(root.path)", "--disk", "data=\(data!)")
    }

    /// Changes both disks, so the next backup must store new chunks, and keeps copies.
    private func change(_ step: Int, remember name: String) throws {
        try root.write("data/step-\(step).bin", pseudoRandomBytes(300_000, seed: UInt64(1000 + step)))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: data))
        handle.seek(toFileOffset: UInt64(step % 6) << 20)
        handle.write(Data(pseudoRandomBytes(1 << 20, seed: UInt64(2000 + step))))
        handle.closeFile()
        var copies: [String: String] = [:]
        for (disk, path) in ["root": root.path, "data": data!] {
            let copy = scratch.file("as-at-\(name)-\(disk).img")
            try mustRun(["cp", "--sparse=always", path, copy])
            copies[disk] = copy
        }
        asItWas[name] = copies
    }

    /// Runs vaultctl with a fault planned; it must die by SIGKILL at that moment.
    private func killed(_ arguments: [String], at moment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try runCommand([productPath("vaultctl")] + arguments,
                                    environment: ["VAULT_REPO": ctl.repository, "VAULTFS_FAULT": moment], timeout: 120)
        XCTAssertEqual(result.status, SIGKILL, "\(arguments) at \(moment) was not killed: \(result.stderr)", file: file, line: line)
    }

    private func assertExportsIdentical(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for (disk, copy) in try XCTUnwrap(asItWas[name]) {
            let out = scratch.file("export.img")
            defer { unlink(out) }
            try ctl.run("export", "web/\(name)", "--disk", disk, "-o", out)
            let same = try runCommand(["cmp", out, copy])
            XCTAssertEqual(same.status, 0, "\(name) disk \(disk) differs: \(same.stdout)", file: file, line: line)
        }
    }

    private func statuses() throws -> [String: String] {
        Dictionary(uniqueKeysWithValues: try ctl.json("points", "--all").map { ($0["name"] as! String, $0["status"] as! String) })
    }

    func testBackupKilledAtTwelveMomentsLeavesWholePointsAndCollectableGarbage() throws {
        try change(0, remember: "base")
        try ctl.run("backup", "web", "--name", "base")
        // Spread over the chunk writes (before and after each is linked into place), the map
        // writes of both disks, the manifest and the catalog commit.
        let moments = ["chunk-written:1", "chunk-written:9", "chunk-written:40", "chunk-linked:1", "chunk-linked:5",
                       "chunk-linked:20", "chunk-linked:35", "chunk-linked:50", "map-written:1", "map-written:2",
                       "manifest-written", "committed"]
        let whole = Set(["manifest-written", "committed"])
        for (step, moment) in moments.enumerated() {
            let name = "k\(step)"
            try change(step + 1, remember: name)
            try killed(["backup", "web", "--name", name], at: moment)

            let verify = try ctl.attempt(["verify"])
            XCTAssertEqual(verify.status, 0, "verify after a kill at \(moment): \(verify.stdout)\(verify.stderr)")
            let status = try statuses()[name]
            if whole.contains(moment) {
                // The manifest said active and every chunk and map was synced: the point is
                // whole, and the next opener commits it.
                XCTAssertEqual(status, "Active", "killed at \(moment)")
                try assertExportsIdentical(name)
            } else {
                XCTAssertEqual(status, "Error", "a point killed at \(moment) must not show as Active")
            }
            try assertCollectsEverythingUnused()
            try assertExportsIdentical("base")
        }
        for (name, _) in asItWas where try statuses()[name] == "Active" { try assertExportsIdentical(name) }
        // The next backup works and is whole.
        try change(99, remember: "after")
        try ctl.run("backup", "web", "--name", "after")
        try assertExportsIdentical("after")
    }

    func testRetentionPurgeAndCollectionKilledMidwayLoseNothing() throws {
        try ctl.run("policy", "set", "prod", "--start", "00:00", "--every", "4h", "--incrementals", "0", "--keep-fulls", "1",
                    "--now", "2030-01-01T00:00")
        let slots = ["2030-01-01T04:00", "2030-01-01T08:00", "2030-01-01T12:00"]
        let names = slots.map { Units.compactUTC(Units.parseTime($0)!) }
        try change(1, remember: names[0])
        try ctl.run("schedule", "run", "--once", "--now", slots[0])
        try change(2, remember: "keep")
        try ctl.run("backup", "web", "--name", "keep")

        // Retention killed after its manifests say deleted but before the catalog does:
        // the catalog is the commit point, so the old full is still there and whole.
        try change(3, remember: names[1])
        try killed(["schedule", "run", "--once", "--now", slots[1]], at: "deletion-manifest-written")
        XCTAssertEqual(try statuses()[names[0]], "Active")
        try assertExportsIdentical(names[0])
        try assertCollectsEverythingUnused()
        try assertExportsIdentical(names[0])

        // Killed after the catalog commit, before collecting: the next gc reclaims it.
        try change(4, remember: names[2])
        try ctl.run("schedule", "run", "--once", "--now", slots[2])
        try ctl.run("delete", "web/keep")
        try killed(["purge"], at: "deletion-committed")
        XCTAssertNil(try statuses()["keep"])
        try assertCollectsEverythingUnused()

        // A collection killed after removing three chunks removed only unused ones.
        try change(5, remember: "extra")
        try ctl.run("backup", "web", "--name", "extra")
        try ctl.run("delete", "web/extra")
        try ctl.run("purge")
        try ctl.run("backup", "web", "--name", "again")
        try ctl.run("delete", "web/again")
        let purgeResult = try runCommand([productPath("vaultctl"), "purge"],
                                         environment: ["VAULT_REPO": ctl.repository, "VAULTFS_FAULT": "gc-chunk-removed:3"])
        XCTAssertEqual(purgeResult.status, SIGKILL, purgeResult.stderr)
        XCTAssertEqual(try ctl.attempt(["verify"]).status, 0)
        try assertCollectsEverythingUnused()
        try assertExportsIdentical(names[2])
    }

    /// After `gc`, the repository holds exactly the chunks and maps its restorable points
    /// use, and no temporary file.
    private func assertCollectsEverythingUnused(file: StaticString = #filePath, line: UInt = #line) throws {
        try ctl.run("gc")
        let repository = try openRepository(ctl.repository)
        var referenced = Set<String>()
        let live = try repository.catalog.points(includeSoftDeleted: true).filter { $0.status == .active }
        for point in live {
            for disk in try repository.catalog.pointDisks(point.id) {
                for case .data(let hash) in try repository.maps.read(point: point.id, disk: disk.disk).entries.map(\.ref) {
                    referenced.insert(hash.hex)
                }
            }
        }
        let files = try mustRun(["find", ctl.repository, "-type", "f"]).split(separator: "\n").map(String.init)
        let chunks = Set(files.filter { $0.contains("/chunks/") }.map { ($0 as NSString).lastPathComponent })
        XCTAssertEqual(chunks, referenced, "chunk files differ from what restorable points use", file: file, line: line)
        XCTAssertEqual(files.filter { $0.contains(".tmp-") }, [], file: file, line: line)
        let mapFolders = Set(try FileManager.default.contentsOfDirectory(atPath: "\(ctl.repository)/maps"))
        XCTAssertEqual(mapFolders, Set(live.map(\.id)), "map folders differ from restorable points", file: file, line: line)
    }
}
