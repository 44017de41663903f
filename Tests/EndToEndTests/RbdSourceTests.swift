import Foundation
import TestSupport
import XCTest

/// Ceph RBD images as disks (`rbd:POOL/IMAGE`), on the real single-node Ceph the S3 tests
/// start: every point is a snapshot, a full reads only allocated extents, an incremental only
/// what changed since its parent's snapshot, and every point exports byte for byte as `rbd
/// export` of its snapshot. The tests' image, repository and helpers.
class RbdTestCase: XCTestCase {
    var scratch: Scratch!
    var gateway: CephGateway!
    var ctl: Vaultctl!
    var image = ""
    static let mib = 1 << 20
    /// The test image: 2 GiB, of which 32 objects of 4 MiB, 64 MiB apart, hold data.
    static let imageSize = 2 << 30
    static let regions = (0..<32).map { $0 * (64 << 20) }

    override func setUpWithError() throws {
        scratch = Scratch("rbd")
        gateway = try CephGateway.shared()
        try gateway.rbdPool()
        image = "vaultfs-test-\(UInt32.random(in: 0...UInt32.max))"
        try gateway.rbdWrite(
            image, ["create:\(Self.imageSize)"] + Self.regions.enumerated().map { "w:\($1):4M:\($0 + 1)" })
        ctl = try makeRepository()
        try ctl.run(["init", ctl.repository] + Self.initOptions)
        try ctl.run("vault", "create", "prod")
        try ctl.run(
            "policy", "set", "prod", "--start", "00:00", "--every", "1", "--incrementals", "20", "--keep-fulls", "2")
        try ctl.run(
            "server", "add", "db", "--vault", "prod", "--disk", "root=rbd:rbd/\(image)", "--ceph-conf", gateway.conf)
    }

    override func tearDown() {
        // Snapshots and image go in every outcome: memstore keeps them in memory.
        if let gateway, !image.isEmpty {
            _ = try? gateway.rbd("snap", "purge", "rbd/\(image)")
            _ = try? gateway.rbd("rm", "--no-progress", "rbd/\(image)")
        }
        super.tearDown()
    }

    class var initOptions: [String] { [] }

    func makeRepository() throws -> Vaultctl { Vaultctl(repository: scratch.file("repo")) }

    /// `schedule run --once --now HOUR` and the point it made.
    func runSlot(
        _ hour: Int, expect kind: String, extra: [String: String] = [:], file: StaticString = #filePath,
        line: UInt = #line
    )
        throws -> [String: Any]
    {
        let result = try ctl.attempt(
            ["schedule", "run", "--once", "--now", String(format: "2027-01-01T%02d:00Z", hour), "--json"], extra: extra)
        XCTAssertEqual(result.status, 0, "slot \(hour): \(result.stderr)", file: file, line: line)
        let run = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let outcomes = run?["outcomes"] as? [[String: Any]] ?? []
        let point = try XCTUnwrap(
            outcomes.first?["point"] as? [String: Any], "slot \(hour) made no point: \(result.stdout)")
        XCTAssertEqual(point["type"] as? String, kind, file: file, line: line)
        XCTAssertEqual(point["status"] as? String, "Active", "\(point)", file: file, line: line)
        lastStderr = result.stderr
        return point
    }
    var lastStderr = ""

    func bytesRead(_ point: [String: Any]) -> Int {
        ((point["disks"] as? [[String: Any]])?.first?["bytesRead"] as? Int) ?? -1
    }

    /// The point's export is `rbd export` of its snapshot, byte for byte.
    func assertExportsAsItsSnapshot(_ point: [String: Any], file: StaticString = #filePath, line: UInt = #line) throws {
        let id = try XCTUnwrap(point["id"] as? String)
        let ours = scratch.file("export.img")
        let theirs = scratch.file("rbd-export.img")
        defer {
            unlink(ours)
            unlink(theirs)
        }
        try ctl.run("export", id, "--disk", "root", "-o", ours)
        try gateway.rbd("export", "--no-progress", "rbd/\(image)@vaultfs-\(id)", theirs)
        let same = try runCommand(["cmp", ours, theirs])
        XCTAssertEqual(
            same.status, 0, "point \(point["name"] ?? id) differs from its snapshot: \(same.stdout)", file: file,
            line: line)
    }

    /// Changes about 1% of the image, inside objects that hold data: `small` scattered 4 KiB
    /// writes, `large` 1 MiB writes and one discard of a whole object. Returns the 1 MiB
    /// chunks the writes touched (the discarded one reads as zeros without being read).
    func change(round: Int, small: Int = 64, large: Int = 16) throws -> Set<Int> {
        var operations: [String] = []
        var touched = Set<Int>()
        for k in 0..<small {
            let region = Self.regions[(k * 7 + round) % 31]
            let offset = region + ((k * 37 + round * 11) % 4) * Self.mib + 8192 * ((k + round) % 100)
            operations.append("w:\(offset):4K:\(round * 1000 + k)")
            touched.insert(offset / Self.mib)
        }
        for k in 0..<large {
            let offset = Self.regions[(k * 5 + round * 3) % 31] + (k % 3) * Self.mib + 4096 * (k % 2)
            operations.append("w:\(offset):1M:\(round * 2000 + k)")
            touched.formUnion([offset / Self.mib, (offset + Self.mib - 1) / Self.mib])
        }
        // A chunk that had data is overwritten with zeros (not discarded): it must become a
        // zero position, not keep the parent's chunk.
        let zeroed = Self.regions[(round * 3) % 31] + 3 * Self.mib
        operations.append("z:\(zeroed):1M")
        touched.insert(zeroed / Self.mib)
        // The last region's object goes whole.
        operations.append("d:\(Self.regions[31]):4M")
        try gateway.rbdWrite(image, operations)
        return touched
    }
}

/// Full and incremental points of an RBD disk in a repository in a folder.
class RbdSourceTests: RbdTestCase {
    func testIncrementalsReadOnlyTheChangedExtentsAndExportAsTheirSnapshots() throws {
        let full = try runSlot(0, expect: "Full")
        // A full reads the allocated objects, nothing of the unallocated 1.9 GiB.
        XCTAssertEqual(bytesRead(full), Self.regions.count * 4 * Self.mib)
        try assertExportsAsItsSnapshot(full)
        XCTAssertLessThan(full["frozenMs"] as? Int ?? .max, 5000)

        var last = full
        for round in 1...2 {
            let touched = try change(round: round)
            let before = try gateway.osdReadBytes()
            let point = try runSlot(round, expect: "Incremental")
            let fromCluster = try gateway.osdReadBytes() - before
            let changed = touched.count * Self.mib
            XCTAssertGreaterThan(bytesRead(point), 0)
            XCTAssertLessThanOrEqual(
                Double(bytesRead(point)), 1.2 * Double(changed),
                "round \(round): read \(bytesRead(point)) for \(changed)")
            // The OSD's own count agrees: nothing else was read but the image's header and maps.
            XCTAssertLessThanOrEqual(
                Double(fromCluster), 1.2 * Double(changed) + Double(Self.mib),
                "round \(round): the OSD sent \(fromCluster) for \(changed)")
            XCTAssertEqual(point["parent"] as? String, last["id"] as? String)
            try assertExportsAsItsSnapshot(point)
            last = point
        }

        // Only the chain's tip keeps its snapshot; one that vaultfs did not make stays.
        try gateway.rbd("snap", "create", "rbd/\(image)@mine")
        try ctl.run("gc")
        XCTAssertEqual(try gateway.snapshots(image), ["mine", "vaultfs-\(try XCTUnwrap(last["id"] as? String))"])

        let history = try ctl.json("history")
        XCTAssertEqual(history.count, 3)
        for entry in history {
            XCTAssertNotNil(entry["frozenMs"] as? Int, "\(entry)")
            XCTAssertNotNil((entry["disks"] as? [[String: Any]])?.first?["bytesRead"] as? Int, "\(entry)")
        }
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))

        // The mount shows the same image, and point.json what the backup read.
        let mount = try MountedRepository(
            repository: ctl.repository, at: scratch.file("mnt"), environment: ctl.environment)
        defer { mount.unmount() }
        let name = try XCTUnwrap(last["name"] as? String)
        let shown =
            try JSONSerialization.jsonObject(
                with: Data(try mustRun(["cat", mount.path("prod/db/\(name)/point.json")], timeout: 10).utf8))
            as? [String: Any]
        XCTAssertEqual(bytesRead(try XCTUnwrap(shown)), bytesRead(last))
        let theirs = scratch.file("rbd-export.img")
        defer { unlink(theirs) }
        try gateway.rbd(
            "export", "--no-progress", "rbd/\(image)@vaultfs-\(try XCTUnwrap(last["id"] as? String))", theirs)
        try mustRun(["cmp", mount.path("prod/db/\(name)/root.img"), theirs], timeout: 120)
    }

    func testBackupsKilledAtEachMomentLeaveNoSnapshotAndTheNextIncrementalIsRight() throws {
        var tip = try runSlot(0, expect: "Full")
        var hour = 1
        for moment in ["snapshot-made", "map-written", "manifest-written", "committed"] {
            _ = try change(round: hour)
            let killed = try ctl.attempt(
                ["schedule", "run", "--once", "--now", String(format: "2027-01-01T%02d:00Z", hour)],
                extra: ["VAULTFS_FAULT": moment])
            XCTAssertEqual(killed.status, SIGKILL, "\(moment): \(killed.stderr)")
            try ctl.run("gc")
            // What a point whose backup was cut off or superseded had is gone; the chain's tip
            // (the killed one when it had committed) keeps its snapshot.
            let points = try ctl.json("points")
            let active = points.filter { $0["status"] as? String == "Active" }
            let newest = try XCTUnwrap(active.last?["id"] as? String)
            XCTAssertEqual(try gateway.snapshots(image), ["vaultfs-\(newest)"], moment)
            if moment == "committed" || moment == "manifest-written" {
                XCTAssertNotEqual(newest, tip["id"] as? String, "\(moment) should have left its point whole")
            }
            hour += 1
            let point = try runSlot(hour, expect: "Incremental")
            XCTAssertEqual(point["parent"] as? String, newest)
            try assertExportsAsItsSnapshot(point)
            tip = point
            hour += 1
        }
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
    }
}

/// What an RBD disk does when things are not as planned: its parent's snapshot gone, the
/// image or the cluster not there, a bad name.
final class RbdSourceFallbackTests: RbdTestCase {
    func testAnIncrementalWhoseParentSnapshotIsGoneReadsEverythingAndSaysSo() throws {
        let full = try runSlot(0, expect: "Full")
        try gateway.rbd("snap", "rm", "--no-progress", "rbd/\(image)@vaultfs-\(try XCTUnwrap(full["id"] as? String))")
        _ = try change(round: 1)
        let point = try runSlot(1, expect: "Incremental")
        XCTAssertTrue((point["warning"] as? String ?? "").contains("is gone"), "\(point)")
        XCTAssertTrue(lastStderr.contains("is gone"), lastStderr)
        XCTAssertGreaterThanOrEqual(bytesRead(point), (Self.regions.count - 1) * 4 * Self.mib)
        try assertExportsAsItsSnapshot(point)
        // The next one diffs again, from this point's snapshot.
        let touched = try change(round: 2)
        let next = try runSlot(2, expect: "Incremental")
        XCTAssertNil(next["warning"] as? String)
        XCTAssertLessThanOrEqual(Double(bytesRead(next)), 1.2 * Double(touched.count * Self.mib))
        try assertExportsAsItsSnapshot(next)
    }

    func testAMissingImageOrAnUnreachableClusterFailsWithOneLine() throws {
        try ctl.run(
            "server", "add", "gone", "--vault", "prod", "--disk", "root=rbd:rbd/no-such-image", "--ceph-conf",
            gateway.conf)
        let missing = try ctl.attempt(["backup", "gone"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("cannot open RBD image rbd/no-such-image"), missing.stderr)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1, missing.stderr)

        // A cluster whose monitor does not answer: the backup fails within the client's timeout.
        let conf = scratch.file("dead.conf")
        try "[global]\nmon_host = [v2:127.0.0.1:9]\nauth_client_required = none\n".write(
            toFile: conf, atomically: true, encoding: .utf8)
        try ctl.run("server", "add", "dead", "--vault", "prod", "--disk", "root=rbd:rbd/\(image)", "--ceph-conf", conf)
        let started = Date()
        let dead = try ctl.attempt(["backup", "dead"], timeout: 90)
        XCTAssertNotEqual(dead.status, 0)
        XCTAssertTrue(dead.stderr.contains("cannot reach the Ceph cluster"), dead.stderr)
        XCTAssertEqual(dead.stderr.split(separator: "\n").count, 1, dead.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
        XCTAssertEqual(try gateway.snapshots(image), [])
    }

    func testBadRbdNamesAreRefusedWithOneLine() throws {
        for bad in ["rbd:pool", "rbd:/img", "rbd:pool/img/x", "rbd:po ol/img", "rbd:pool/img@snap", "rbd:pool/-x;rm"] {
            let result = try ctl.attempt(["server", "add", "bad", "--disk", "root=\(bad)"])
            XCTAssertNotEqual(result.status, 0, bad)
            XCTAssertTrue(result.stderr.contains("rbd:POOL/IMAGE"), "\(bad): \(result.stderr)")
        }
        // How this host reaches Ceph is shown, and kept by `server adopt`.
        XCTAssertTrue(try ctl.run("server", "show", "db").contains("ceph:   \(gateway.conf), client.admin"))
        try ctl.run("server", "adopt", "db")
        let shown = try JSONSerialization.jsonObject(with: Data(try ctl.run("server", "show", "db", "--json").utf8))
        XCTAssertEqual((shown as? [String: Any])?["cephConf"] as? String, gateway.conf)
        let id = try ctl.attempt(["server", "add", "bad", "--disk", "root=rbd:rbd/x", "--ceph-id", "a b"])
        XCTAssertNotEqual(id.status, 0)
        XCTAssertTrue(id.stderr.contains("--ceph-id"), id.stderr)
    }
}

/// The same tests into an encrypted repository in a bucket of the same Ceph's S3 gateway.
final class RbdIntoEncryptedBucketTests: RbdSourceTests {
    override class var initOptions: [String] { ["--encryption", "aes-256-gcm"] }

    override func makeRepository() throws -> Vaultctl {
        let environment = gateway.environment.merging([
            "VAULT_STATE_DIR": scratch.file("state"), "VAULT_PASSPHRASE": "rbd-test-passphrase",
        ]) { $1 }
        return Vaultctl(repository: "s3://\(gateway.newBucket("rbd"))/repo", environment: environment)
    }

    // Linux XCTest lists a subclass's inherited tests only where it declares them again.
    override func testIncrementalsReadOnlyTheChangedExtentsAndExportAsTheirSnapshots() throws {
        try super.testIncrementalsReadOnlyTheChangedExtentsAndExportAsTheirSnapshots()
    }

    override func testBackupsKilledAtEachMomentLeaveNoSnapshotAndTheNextIncrementalIsRight() throws {
        try super.testBackupsKilledAtEachMomentLeaveNoSnapshotAndTheNextIncrementalIsRight()
    }
}
