import Foundation
import TestSupport
import XCTest

@testable import VaultCore

/// Backups, retention, purge and garbage collection killed with SIGKILL at exact moments
/// (`VAULTFS_FAULT`): what was stored stays whole, nothing half-made shows as Active, and
/// the next collection reclaims everything a killed run wrote. `S3CrashTests` runs the same
/// on a repository in a bucket of a real Ceph gateway.
class CrashTests: XCTestCase {
    var scratch: Scratch!
    var ctl: Vaultctl!
    var root: Ext4Image!
    var data: String!
    /// Point name -> copies of the disks as they were (disk name -> path).
    var asItWas: [String: [String: String]] = [:]

    override func setUpWithError() throws {
        scratch = Scratch("crash")
        ctl = try makeRepository()
        root = try Ext4Image.make(
            at: scratch.file("root.img"), size: "16M", files: ["etc/hostname": Array("web\n".utf8)])
        data = scratch.file("data.img")
        XCTAssertTrue(FileManager.default.createFile(atPath: data, contents: Data(pseudoRandomBytes(6 << 20, seed: 3))))
        try ctl.run(["init", ctl.repository, "--chunk-size", "64K"] + Self.initOptions)
        try ctl.run("vault", "create", "prod")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(root.path)", "--disk", "data=\(data!)")
    }

    /// More options for `init`.
    class var initOptions: [String] { [] }

    /// Whether a deletion is done once its manifests say so (a shared bucket) rather than once
    /// the catalog does.
    class var manifestsCommitDeletions: Bool { false }

    /// The repository the tests use (not made yet): in a folder here.
    func makeRepository() throws -> Vaultctl { Vaultctl(repository: scratch.file("repo")) }

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
    private func killed(_ arguments: [String], at moment: String, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        let result = try runCommand(
            [productPath("vaultctl")] + arguments,
            environment: ctl.environment.merging(["VAULT_REPO": ctl.repository, "VAULTFS_FAULT": moment]) { $1 },
            timeout: 120)
        XCTAssertEqual(
            result.status, SIGKILL, "\(arguments) at \(moment) was not killed: \(result.stderr)", file: file, line: line
        )
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
        Dictionary(
            uniqueKeysWithValues: try ctl.json("points", "--all").map {
                ($0["name"] as! String, $0["status"] as! String)
            })
    }

    func testBackupKilledAtTwelveMomentsLeavesWholePointsAndCollectableGarbage() throws {
        try change(0, remember: "base")
        try ctl.run("backup", "web", "--name", "base")
        // Spread over the chunk writes (before and after each is linked into place), the map
        // writes of both disks, the manifest and the catalog commit.
        let moments = [
            "chunk-written:1", "chunk-written:9", "chunk-written:40", "chunk-linked:1", "chunk-linked:5",
            "chunk-linked:20", "chunk-linked:35", "chunk-linked:50", "map-written:1", "map-written:2",
            "manifest-written", "committed",
        ]
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
        try ctl.run(
            "policy", "set", "prod", "--start", "00:00", "--every", "4h", "--incrementals", "0", "--keep-fulls", "1",
            "--now", "2030-01-01T00:00")
        let slots = ["2030-01-01T04:00", "2030-01-01T08:00", "2030-01-01T12:00"]
        let names = slots.map { Units.compactUTC(Units.parseTime($0)!) }
        try change(1, remember: names[0])
        try ctl.run("schedule", "run", "--once", "--now", slots[0])
        try change(2, remember: "keep")
        try ctl.run("backup", "web", "--name", "keep")

        // Retention killed after its manifests say deleted but before the catalog does: in a
        // folder the catalog is the commit point, so the old full is still there and whole;
        // in a bucket other hosts share, the manifest is, so it is deleted, and whole until
        // then.
        try change(3, remember: names[1])
        try killed(["schedule", "run", "--once", "--now", slots[1]], at: "deletion-manifest-written")
        if Self.manifestsCommitDeletions {
            XCTAssertNil(try statuses()[names[0]])
            try assertCollectsEverythingUnused()
        } else {
            XCTAssertEqual(try statuses()[names[0]], "Active")
            try assertExportsIdentical(names[0])
            try assertCollectsEverythingUnused()
            try assertExportsIdentical(names[0])
        }

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
        let purgeResult = try runCommand(
            [productPath("vaultctl"), "purge"],
            environment: ctl.environment.merging(["VAULT_REPO": ctl.repository, "VAULTFS_FAULT": "gc-chunk-removed:3"])
            { $1 })
        XCTAssertEqual(purgeResult.status, SIGKILL, purgeResult.stderr)
        XCTAssertEqual(try ctl.attempt(["verify"]).status, 0)
        try assertCollectsEverythingUnused()
        try assertExportsIdentical(names[2])
    }

    /// After `gc`, the repository holds exactly the chunks and maps its restorable points
    /// use, and no temporary file.
    private func assertCollectsEverythingUnused(file: StaticString = #filePath, line: UInt = #line) throws {
        // Listing every chunk finds those of killed backups (a bucket is listed only weekly).
        try ctl.run("gc", "--list")
        let repository = try openRepository(ctl.repository)
        var referenced = Set<String>()
        let live = try repository.catalog.points(includeSoftDeleted: true).filter { $0.status == .active }
        for point in live {
            for disk in try repository.catalog.pointDisks(point.id) {
                for case .data(let hash) in try repository.maps.read(point: point.id, disk: disk.disk).entries.map(
                    \.ref)
                {
                    referenced.insert(hash.hex)
                }
            }
        }
        let chunks = Set(try repository.objects.list(prefix: "chunks/").map { ($0.key as NSString).lastPathComponent })
        XCTAssertEqual(chunks, referenced, "chunks differ from what restorable points use", file: file, line: line)
        if FileManager.default.fileExists(atPath: ctl.repository) {
            let files = try mustRun(["find", ctl.repository, "-type", "f"]).split(separator: "\n").map(String.init)
            XCTAssertEqual(files.filter { $0.contains(".tmp-") }, [], file: file, line: line)
        }
        XCTAssertEqual(
            try repository.maps.points(), Set(live.map(\.id)), "maps differ from restorable points", file: file,
            line: line)
    }
}

/// The crash tests on a repository in a bucket of a real Ceph RADOS Gateway: a PUT is the
/// moment a chunk appears, so "chunk-written" is just before it and "chunk-linked" just after.
final class S3CrashTests: CrashTests {
    override class var manifestsCommitDeletions: Bool { true }
    /// Collections remove at once, as in a folder, so the killed one has chunks to remove.
    override class var initOptions: [String] { ["--gc-grace", "0"] }

    override func makeRepository() throws -> Vaultctl {
        let gateway = try CephGateway.shared()
        let environment = gateway.environment.merging(["VAULT_STATE_DIR": scratch.file("state")]) { $1 }
        // The tests also open the repository in this process.
        for (key, value) in environment { setenv(key, value, 1) }
        return Vaultctl(repository: "s3://\(gateway.newBucket("crash"))/repo", environment: environment)
    }

    override func tearDown() {
        unsetenv("VAULT_STATE_DIR")
        unsetenv("VAULT_S3_ENDPOINT")
        super.tearDown()
    }

    override func testBackupKilledAtTwelveMomentsLeavesWholePointsAndCollectableGarbage() throws {
        try super.testBackupKilledAtTwelveMomentsLeavesWholePointsAndCollectableGarbage()
    }

    override func testRetentionPurgeAndCollectionKilledMidwayLoseNothing() throws {
        try super.testRetentionPurgeAndCollectionKilledMidwayLoseNothing()
    }
}
