import Foundation
import TestSupport
import XCTest

/// qemu NBD exports as disks (`nbd+unix:///EXPORT?socket=PATH`) with dirty bitmaps kept through
/// QMP, on a real qemu-storage-daemon serving a qcow2 image, written through the export with
/// qemu-io as a VM's writes arrive: an incremental reads only what the bitmaps marked, and
/// every point exports byte for byte as the export was.
final class NbdSourceTests: XCTestCase {
    var scratch: Scratch!
    var qemu: QemuStorageDaemon!
    var ctl: Vaultctl!
    static let mib = 1 << 20
    /// 16 objects of 4 MiB holding data, 32 MiB apart, in a 512 MiB image.
    static let regions = (0..<16).map { $0 * (32 << 20) }

    override func setUpWithError() throws {
        scratch = Scratch("nbd")
        qemu = try QemuStorageDaemon(
            directory: scratch.path, size: "512M",
            prepare: Self.regions.enumerated().map { "write -P \($0 + 1) \($1) 4M" })
        ctl = Vaultctl(repository: scratch.file("repo"))
        try ctl.run("init", ctl.repository)
        try ctl.run("vault", "create", "prod")
        try ctl.run(
            "policy", "set", "prod", "--start", "00:00", "--every", "1", "--incrementals", "20", "--keep-fulls", "2")
        try ctl.run(
            "server", "add", "vm1", "--vault", "prod", "--disk", "root=\(qemu.uri)", "--bitmap", "vaultfs", "--qmp",
            qemu.qmpSocket)
    }

    override func tearDown() {
        qemu?.stop()
        super.tearDown()
    }

    func runSlot(_ hour: Int, expect kind: String, file: StaticString = #filePath, line: UInt = #line) throws
        -> [String: Any]
    {
        let result = try ctl.attempt(
            ["schedule", "run", "--once", "--now", String(format: "2027-01-01T%02d:00Z", hour), "--json"])
        XCTAssertEqual(result.status, 0, "slot \(hour): \(result.stderr)", file: file, line: line)
        let run = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let point = try XCTUnwrap(
            (run?["outcomes"] as? [[String: Any]])?.first?["point"] as? [String: Any], "slot \(hour): \(result.stdout)")
        XCTAssertEqual(point["type"] as? String, kind, file: file, line: line)
        XCTAssertEqual(point["status"] as? String, "Active", "\(point)", file: file, line: line)
        return point
    }

    func bytesRead(_ point: [String: Any]) -> Int {
        ((point["disks"] as? [[String: Any]])?.first?["bytesRead"] as? Int) ?? -1
    }

    /// The point's export is the NBD export's bytes now.
    func assertExportsAsTheExport(_ point: [String: Any], file: StaticString = #filePath, line: UInt = #line) throws {
        let ours = scratch.file("export.img")
        let theirs = scratch.file("now.img")
        defer {
            unlink(ours)
            unlink(theirs)
        }
        try ctl.run("export", try XCTUnwrap(point["id"] as? String), "--disk", "root", "-o", ours)
        try qemu.copy(to: theirs)
        let same = try runCommand(["cmp", ours, theirs])
        XCTAssertEqual(same.status, 0, "point \(point["name"] ?? "") differs: \(same.stdout)", file: file, line: line)
    }

    /// Writes through the export: scattered 4 KiB writes, 1 MiB writes, zeros over data and a
    /// discard. Returns the 1 MiB chunks touched.
    func change(round: Int) throws -> Set<Int> {
        var commands: [String] = []
        var touched = Set<Int>()
        for k in 0..<32 {
            let offset = Self.regions[(k * 5 + round) % 15] + ((k + round) % 4) * Self.mib + 8192 * ((k * 3) % 100)
            commands.append("write -P \((round * 40 + k) % 250 + 1) \(offset) 4k")
            touched.insert(offset / Self.mib)
        }
        for k in 0..<4 {
            let offset = Self.regions[(k * 3 + round) % 15] + (k % 3) * Self.mib
            commands.append("write -P \((round * 7 + k) % 250 + 1) \(offset) 1M")
            touched.insert(offset / Self.mib)
        }
        let zeroed = Self.regions[(round * 2) % 15] + 3 * Self.mib
        commands.append("write -z \(zeroed) 1M")
        touched.insert(zeroed / Self.mib)
        commands.append("discard \(Self.regions[15] + ((round % 4) * Self.mib)) 1M")
        touched.insert((Self.regions[15] + (round % 4) * Self.mib) / Self.mib)
        try qemu.write(commands)
        return touched
    }

    func testIncrementalsReadOnlyWhatTheBitmapsMarkedAndExportAsTheExportWas() throws {
        let full = try runSlot(0, expect: "Full")
        XCTAssertEqual(bytesRead(full), Self.regions.count * 4 * Self.mib)
        try assertExportsAsTheExport(full)
        var last = full
        for round in 1...2 {
            let touched = try change(round: round)
            let point = try runSlot(round, expect: "Incremental")
            XCTAssertEqual(point["parent"] as? String, last["id"] as? String)
            XCTAssertGreaterThan(bytesRead(point), 0)
            XCTAssertLessThanOrEqual(
                Double(bytesRead(point)), 1.2 * Double(touched.count * Self.mib),
                "round \(round): read \(bytesRead(point)) for \(touched.count) chunks")
            try assertExportsAsTheExport(point)
            last = point
        }
        // Only the newest point's bitmap is left, recording; the read-only exports are gone.
        XCTAssertEqual(try qemu.bitmaps(), ["vaultfs-\(try XCTUnwrap(last["id"] as? String))"])
        XCTAssertEqual(try qemu.exportIds(), ["root"])
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
    }

    func testAVmsTwoDisksBackUpThroughOneQemu() throws {
        qemu.stop()
        let two = try QemuStorageDaemon(
            directory: scratch.file("two"), size: "64M", prepare: ["write -P 7 0 4M", "write -P 8 32M 4M"],
            exports: ["root", "data"])
        defer { two.stop() }
        try ctl.run("server", "remove", "vm1")
        try ctl.run(
            "server", "add", "vm2", "--vault", "prod", "--disk", "root=\(two.uri("root"))", "--disk",
            "data=\(two.uri("data"))", "--bitmap", "vaultfs", "--qmp", two.qmpSocket)
        _ = try runSlot(0, expect: "Full")
        try two.write(["write -P 9 4096 4k"], export: "root")
        try two.write(["write -P 10 33M 4k", "write -z 0 1M"], export: "data")
        let point = try runSlot(1, expect: "Incremental")
        // One chunk of root and two of data changed, and only they are read.
        let read = (point["disks"] as? [[String: Any]] ?? []).compactMap { $0["bytesRead"] as? Int }.reduce(0, +)
        XCTAssertEqual(read, 3 * Self.mib, "\(point)")
        for disk in ["root", "data"] {
            let ours = scratch.file("\(disk).img")
            let theirs = scratch.file("\(disk)-now.img")
            try ctl.run("export", try XCTUnwrap(point["id"] as? String), "--disk", disk, "-o", ours)
            try two.copy(to: theirs, export: disk)
            try mustRun(["cmp", ours, theirs])
            XCTAssertEqual(try two.bitmaps(disk).count, 1, disk)
        }
        XCTAssertEqual(try two.exportIds(), ["data", "root"])
    }

    func testKilledBackupsAndLostBitmapsNeverLoseAChange() throws {
        var tip = try runSlot(0, expect: "Full")
        var touched = Set<Int>()
        var hour = 1
        for moment in ["bitmap-rotated", "map-written", "committed"] {
            touched.formUnion(try change(round: hour))
            let killed = try ctl.attempt(
                ["schedule", "run", "--once", "--now", String(format: "2027-01-01T%02d:00Z", hour)],
                extra: ["VAULTFS_FAULT": moment])
            XCTAssertEqual(killed.status, SIGKILL, "\(moment): \(killed.stderr)")
            try ctl.run("gc")
            // What the killed backup left in qemu is gone.
            XCTAssertEqual(try qemu.exportIds(), ["root"], moment)
            XCTAssertFalse(try qemu.bitmaps().contains { $0.contains(".read-") }, moment)
            let active = try ctl.json("points").filter { $0["status"] as? String == "Active" }
            let newest = try XCTUnwrap(active.last)
            if moment == "committed" {
                XCTAssertNotEqual(newest["id"] as? String, tip["id"] as? String)
                tip = newest
                touched = []
            }
            hour += 1
            touched.formUnion(try change(round: hour))
            let point = try runSlot(hour, expect: "Incremental")
            XCTAssertEqual(point["parent"] as? String, tip["id"] as? String, moment)
            // The changes the killed backup had seen are read again, and nothing more.
            XCTAssertNil(point["warning"] as? String, moment)
            XCTAssertLessThanOrEqual(
                Double(bytesRead(point)), 1.2 * Double(touched.count * Self.mib), "\(moment): read \(bytesRead(point))")
            try assertExportsAsTheExport(point)
            tip = point
            touched = []
            hour += 1
        }

        // Bitmaps lost (a qemu restarted without them): every allocated extent is read, and said.
        for bitmap in try qemu.bitmaps() {
            _ = try qemu.qmp("block-dirty-bitmap-remove", ["node": "node-root", "name": bitmap])
        }
        _ = try change(round: hour)
        let point = try runSlot(hour, expect: "Incremental")
        XCTAssertTrue((point["warning"] as? String ?? "").contains("no dirty bitmap"), "\(point)")
        XCTAssertGreaterThanOrEqual(bytesRead(point), 15 * 4 * Self.mib)
        try assertExportsAsTheExport(point)
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
    }

    func testBadNbdDisksAndAQemuThatIsNotThereFailWithOneLine() throws {
        for bad in [
            "nbd://host/root", "nbd+unix:///root", "nbd+unix:///root?socket=relative", "nbd+unix:///ro ot?socket=/s",
            "nbd+unix:///root?socket=/a&b",
        ] {
            let result = try ctl.attempt(["server", "add", "bad", "--disk", "root=\(bad)"])
            XCTAssertNotEqual(result.status, 0, bad)
            XCTAssertTrue(result.stderr.contains("nbd+unix:///EXPORT?socket=/PATH"), "\(bad): \(result.stderr)")
        }
        let shown = try JSONSerialization.jsonObject(with: Data(try ctl.run("server", "show", "vm1", "--json").utf8))
        XCTAssertEqual((shown as? [String: Any])?["bitmap"] as? String, "vaultfs")
        XCTAssertEqual((shown as? [String: Any])?["qmp"] as? String, qemu.qmpSocket)
        XCTAssertTrue(try ctl.run("server", "show", "vm1").contains("bitmap: vaultfs-<point id>"))
        let alone = try ctl.attempt(["server", "add", "bad", "--disk", "root=\(qemu.uri)", "--bitmap", "b"])
        XCTAssertNotEqual(alone.status, 0)
        XCTAssertTrue(alone.stderr.contains("--bitmap and --qmp go together"), alone.stderr)

        qemu.stop()
        let gone = try ctl.attempt(["backup", "vm1"])
        XCTAssertNotEqual(gone.status, 0)
        XCTAssertTrue(gone.stderr.contains("cannot reach qemu's QMP socket"), gone.stderr)
        XCTAssertEqual(gone.stderr.split(separator: "\n").count, 1, gone.stderr)
    }
}
