import Foundation
import TestSupport
import VaultCore
import XCTest

/// The catalog is an index of what the repository's manifests say: losing it, or putting an
/// older copy in its place, never costs a stored point.
final class CatalogLossTests: XCTestCase {
    /// Vaults, policies, servers and points with every history state: active, failed,
    /// soft-deleted, deleted by retention, and manual.
    private func populated() throws -> MountFixture {
        let fixture = try MountFixture(policyPoints: 3, manual: ["m1", "m2"])
        try fixture.ctl.run(
            "vault", "create", "spare", "--start", "02:00", "--every", "24h", "--incrementals", "0", "--keep-fulls", "3"
        )
        try fixture.ctl.run(
            "server", "add", "gone", "--vault", "spare", "--disk", "root=\(fixture.scratch.file("missing.img"))")
        _ = try fixture.ctl.attempt(["schedule", "run", "--once", "--now", "2030-01-02T02:00"])
        try fixture.ctl.run("delete", "web/m2")
        return fixture
    }

    private func catalogView(_ ctl: Vaultctl) throws -> [String] {
        [
            try ctl.run("history", "--json"), try ctl.run("points", "--all", "--json"),
            try ctl.run("vault", "list", "--json"),
            try ctl.run("server", "list"), try ctl.run("policy", "show", "prod", "--json"),
        ]
    }

    private func storedFiles(_ fixture: MountFixture) throws -> String {
        try mustRun([
            "find", "\(fixture.ctl.repository)/chunks", "\(fixture.ctl.repository)/maps",
            "\(fixture.ctl.repository)/manifests", "-type", "f",
        ]).split(separator: "\n").sorted().joined(separator: "\n")
    }

    func testMissingCatalogIsRefusedByEveryCommandAndRebuiltWhole() throws {
        let fixture = try populated()
        let ctl = fixture.ctl
        let before = try catalogView(ctl)
        let stored = try storedFiles(fixture)
        for suffix in ["", "-wal", "-shm"] { unlink("\(ctl.repository)/catalog.sqlite\(suffix)") }

        let commands: [[String]] = [
            ["points"], ["history"], ["vault", "list"], ["server", "list"], ["verify"], ["gc"], ["retention", "apply"],
            ["purge"], ["backup", "web"], ["schedule", "run", "--once", "--now", "2030-01-05T16:00"],
            ["export", "web/m1", "-o", fixture.scratch.file("out.img")], ["delete", "web/m1"],
            ["vault", "create", "x"],
        ]
        for command in commands {
            let result = try ctl.attempt(command)
            XCTAssertNotEqual(result.status, 0, "\(command) ran without a catalog")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(command): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("repair --rebuild-catalog"), "\(command): \(result.stderr)")
        }
        let mount = try runCommand(
            [productPath("vaultfs"), ctl.repository, fixture.scratch.file("mnt"), "-f"], timeout: 20)
        XCTAssertNotEqual(mount.status, 0)
        XCTAssertTrue(mount.stderr.contains("repair --rebuild-catalog"), mount.stderr)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: "\(ctl.repository)/catalog.sqlite"),
            "a command recreated the catalog")
        XCTAssertEqual(try storedFiles(fixture), stored, "a refused command changed what is stored")

        let repair = try ctl.run("repair", "--rebuild-catalog")
        XCTAssertTrue(repair.contains("rebuilt the catalog"), repair)
        XCTAssertEqual(try catalogView(ctl), before)
        for name in fixture.names {
            let out = fixture.scratch.file("export.img")
            try ctl.run("export", "web/\(name)", "-o", out)
            try mustRun(["cmp", out, fixture.asItWas[name]!])
        }
        XCTAssertEqual(try ctl.attempt(["verify"]).status, 0)
        try ctl.run("undelete", "web/m2")
        try ctl.run("backup", "web", "--name", "after-repair")
    }

    /// A mount running while the catalog is rebuilt reads the new one: a backup made after
    /// the repair shows in it, and a point made with mkdir is in the catalog `points` reads.
    func testARunningMountFollowsARebuiltCatalog() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let ctl = fixture.ctl
        let mount = try fixture.mount()
        defer { mount.unmount() }
        XCTAssertTrue(try mount.exists("prod/web/\(fixture.names[0])"))
        let repair = try ctl.attempt(["repair", "--rebuild-catalog"])
        XCTAssertEqual(repair.status, 0, repair.stderr)
        XCTAssertTrue(
            repair.stderr.contains("the vaultfs mount at \(mount.mountpoint) reads the new catalog"), repair.stderr)

        try ctl.run("backup", "web", "--name", "after-repair")
        XCTAssertTrue(try eventually(timeout: 10) { try mount.exists("prod/web/after-repair") })
        try mustRun(["mkdir", mount.path("prod/web/by-mkdir")], timeout: 10)
        XCTAssertTrue(
            try eventually(timeout: 60) {
                try ctl.json("points").contains {
                    $0["name"] as? String == "by-mkdir" && $0["status"] as? String == "Active"
                }
            })
        try mustRun(["cmp", mount.path("prod/web/by-mkdir/root.img"), fixture.disk.path], timeout: 60)
        // gc finds nothing the catalog does not know.
        try ctl.run("gc")
        XCTAssertTrue(mount.isRunning)
        // The daemon ends with connections to the replaced catalog still open: what was
        // written to the new catalog meanwhile is all there after it has gone.
        try ctl.run("backup", "web", "--name", "before-exit")
        mount.unmount()
        let names = try ctl.json("points").compactMap { $0["name"] as? String }
        for name in ["after-repair", "by-mkdir", "before-exit"] { XCTAssertTrue(names.contains(name), "\(names)") }
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
    }

    func testOlderCatalogCopyStopsCollectionUntilRebuilt() throws {
        let fixture = try populated()
        let ctl = fixture.ctl
        let catalog = "\(ctl.repository)/catalog.sqlite"
        try mustRun(["cp", catalog, fixture.scratch.file("catalog-copy")])
        try fixture.ctl.run("backup", "web", "--name", "newer")
        let newer = fixture.scratch.file("newer.img")
        try fixture.disk.snapshot(to: newer)
        for suffix in ["", "-wal", "-shm"] { unlink(catalog + suffix) }
        try mustRun(["cp", fixture.scratch.file("catalog-copy"), catalog])
        let stored = try storedFiles(fixture)

        // The copy does not know "newer": collecting now would take its chunks.
        let gc = try ctl.attempt(["gc"])
        XCTAssertNotEqual(gc.status, 0)
        XCTAssertTrue(gc.stderr.contains("repair --rebuild-catalog"), gc.stderr)
        XCTAssertEqual(
            try storedFiles(fixture).components(separatedBy: "\n").filter { $0.contains("/chunks/") },
            stored.components(separatedBy: "\n").filter { $0.contains("/chunks/") })

        try ctl.run("repair", "--rebuild-catalog")
        let out = fixture.scratch.file("out.img")
        try ctl.run("export", "web/newer", "-o", out)
        try mustRun(["cmp", out, newer])
        try ctl.run("gc")
        XCTAssertEqual(try ctl.attempt(["verify"]).status, 0)
    }

    func testEverythingIsOwnerOnlyWhateverTheUmask() throws {
        let scratch = Scratch("modes")
        let disk = try Ext4Image.make(
            at: scratch.file("d.img"), size: "8M", files: ["f": pseudoRandomBytes(50_000, seed: 9)])
        let repo = scratch.file("repo")
        let script = """
            umask 022
            set -e
            "$0" init "$1" --chunk-size 64K
            "$0" -R "$1" vault create prod
            "$0" -R "$1" server add web --vault prod --disk root="$2"
            "$0" -R "$1" backup web --name one
            "$0" -R "$1" delete web/one
            "$0" -R "$1" backup web --name two
            """
        try mustRun(["sh", "-c", script, productPath("vaultctl"), repo, disk.path])
        let open = try mustRun(["find", repo, "-perm", "/077"])
        XCTAssertEqual(open, "", "readable or writable by others: \(open)")
        let count = try mustRun(["find", repo]).split(separator: "\n").count
        XCTAssertGreaterThan(count, 270)

        // Shared with one group: read, never write, for that group; nothing for others.
        let shared = scratch.file("shared")
        try mustRun([
            "sh", "-c", "umask 0; \"$0\" init \"$1\" --group daemon && \"$0\" -R \"$1\" vault create v",
            productPath("vaultctl"), shared,
        ])
        XCTAssertEqual(try mustRun(["find", shared, "-perm", "/027"]), "")
        XCTAssertEqual(try mustRun(["find", shared, "!", "-group", "daemon"]), "")
        XCTAssertEqual(try mustRun(["stat", "-c", "%a", shared]), "2750\n")
    }

    /// `verify` checks what a rebuild of the catalog and every export depend on: each
    /// manifest against the catalog, and the repository's chunk size against the maps. A
    /// rebuild that meets maps without a manifest says so and fails.
    func testVerifyFindsWhatARebuildOrAnExportWouldTripOnAndARebuildNamesWhatItCannotBringBack() throws {
        let fixture = try MountFixture(policyPoints: 0, manual: ["m1", "m2"])
        let ctl = fixture.ctl
        let repo = ctl.repository
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
        let points = try ctl.json("points")
        let id = { (name: String) in points.first { $0["name"] as? String == name }!["id"] as! String }
        let manifest = "\(repo)/manifests/points/\(id("m1")).json"
        let original = try readBytes(manifest)

        // A damaged manifest.
        try Data(original.prefix(original.count / 2)).write(to: URL(fileURLWithPath: manifest))
        var result = try ctl.attempt(["verify"])
        XCTAssertEqual(result.status, 1, result.stdout)
        XCTAssertTrue(
            result.stdout.contains("manifest of point web/m1") && result.stdout.contains("rebuild"), result.stdout)
        // A missing one.
        unlink(manifest)
        result = try ctl.attempt(["verify"])
        XCTAssertEqual(result.status, 1, result.stdout)
        XCTAssertTrue(
            result.stdout.contains("manifest of point web/m1") && result.stdout.contains("missing"), result.stdout)
        // ... and the catalog lost too: the rebuild names the point it cannot bring back.
        for suffix in ["", "-wal", "-shm"] { unlink("\(repo)/catalog.sqlite\(suffix)") }
        result = try ctl.attempt(["repair", "--rebuild-catalog"])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("point \(id("m1")) has chunk maps but no manifest"), result.stderr)
        XCTAssertEqual(try ctl.json("points").compactMap { $0["name"] as? String }, ["m2"])

        // The manifest put back: a rebuild is whole again.
        try Data(original).write(to: URL(fileURLWithPath: manifest))
        try ctl.run("repair", "--rebuild-catalog")
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))

        // repository.json with another chunk size: verify names every map, as export fails.
        let config = "\(repo)/repository.json"
        let settings = try String(contentsOfFile: config, encoding: .utf8)
        XCTAssertTrue(settings.contains("65536"), settings)
        try settings.replacingOccurrences(of: "65536", with: "131072").write(
            toFile: config, atomically: true, encoding: .utf8)
        result = try ctl.attempt(["verify"])
        XCTAssertEqual(result.status, 1, result.stdout)
        XCTAssertTrue(
            result.stdout.contains("map of web/m1") && result.stdout.contains("131072-byte chunks"), result.stdout)
        XCTAssertNotEqual(try ctl.attempt(["export", "web/m1", "-o", fixture.scratch.file("out.img")]).status, 0)
        try settings.write(toFile: config, atomically: true, encoding: .utf8)
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
    }
}
