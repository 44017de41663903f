import Foundation
import TestSupport
import VaultCore
import XCTest

/// The real `vaultfs` mounted as a child process, used with ordinary file tools.
final class MountTests: XCTestCase {
    func testEveryImageOfALongChainAndManualPointsEqualsTheDiskAsItWas() throws {
        let fixture = try MountFixture(policyPoints: 11, manual: ["before-upgrade", "after-upgrade"])
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let points = try fixture.ctl.json("points")
        XCTAssertEqual(points.filter { $0["type"] as? String == "Incremental" }.count, 10)
        for name in fixture.names {
            try mustRun(["cmp", mount.path("prod/web/\(name)/root.img"), fixture.asItWas[name]!], timeout: 60)
        }
        let deepest = fixture.names[10]
        try Ext4Image.check(mount.path("prod/web/\(deepest)/root.img"))
        let listing = try mustRun(["ls", "-a", mount.path("prod/web")], timeout: 10).split(separator: "\n").map(
            String.init)
        XCTAssertEqual(Set(listing), Set([".", "..", "history.json", "latest"] + fixture.names))
        // The scheduler ran with a 2030 clock, so its last slot is the newest point.
        XCTAssertEqual(try mount.linkTarget("prod/web/latest"), deepest)
        let id = try XCTUnwrap(points.first { $0["name"] as? String == deepest }?["id"] as? String)
        try mustRun(["cmp", mount.path("prod/.by-id/\(id)/root.img"), fixture.asItWas[deepest]!], timeout: 60)
        let history =
            try JSONSerialization.jsonObject(
                with: Data(try mustRun(["cat", mount.path("prod/web/history.json")]).utf8)) as? [[String: Any]]
        XCTAssertEqual(history?.count, 13)
        let policy = try mustRun(["cat", mount.path("prod/policy.json")])
        XCTAssertTrue(policy.contains("\"incrementals\" : 11"), policy)
    }

    func testDirectoryTimesAreThePointsTimes() throws {
        let fixture = try MountFixture(policyPoints: 2)
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let second = fixture.names[1]
        let attributes = try mount.io {
            try FileManager.default.attributesOfItem(atPath: mount.path("prod/web/\(second)"))
        }
        XCTAssertEqual(attributes[.modificationDate] as? Date, Units.parseTime("2030-01-01T20:00"))
    }

    func testSparseCopyAndSeekFollowTheZeroMap() throws {
        let fixture = try MountFixture(policyPoints: 2)
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let name = fixture.names[1]
        let image = mount.path("prod/web/\(name)/root.img")
        let repository = try fixture.repository()
        let point = try repository.catalog.point(matching: "web/\(name)")
        let flat = try repository.flatten(point: point.id, disk: "root")
        let stored = try XCTUnwrap(repository.catalog.pointDisks(point.id).first).dataBytes
        XCTAssertEqual(try mount.io { allocatedBytes(image) }, (stored + 511) / 512 * 512)

        let copy = fixture.scratch.file("copy.img")
        try mustRun(["cp", "--sparse=always", image, copy], timeout: 60)
        try mustRun(["cmp", copy, fixture.asItWas[name]!])
        // cp also punches holes for zero blocks inside stored chunks, so its copy allocates
        // exactly what a sparse copy of the disk itself does, and no more than is stored.
        XCTAssertEqual(allocatedBytes(copy), allocatedBytes(fixture.asItWas[name]!))
        XCTAssertLessThanOrEqual(allocatedBytes(copy), stored)
        XCTAssertLessThan(allocatedBytes(copy), flat.size / 4)

        let seen: [(Int64, Int64)] = try mount.io {
            let fd = open(image, O_RDONLY)
            defer { close(fd) }
            var regions: [(Int64, Int64)] = []
            var offset: Int64 = 0
            while true {
                let data = lseek(fd, off_t(offset), 3)
                if data < 0 { break }
                let hole = lseek(fd, data, 4)
                regions.append((Int64(data), Int64(hole)))
                offset = Int64(hole)
            }
            return regions
        }
        var expected: [(Int64, Int64)] = []
        var offset: Int64 = 0
        while let data = flat.nextData(from: offset) {
            let hole = flat.nextHole(from: data)
            expected.append((data, hole))
            offset = hole
        }
        XCTAssertGreaterThan(expected.count, 1)
        XCTAssertEqual(seen.map { "\($0.0)-\($0.1)" }, expected.map { "\($0.0)-\($0.1)" })
    }

    func testMkdirTakesABackupNowAndRmdirSoftDeletes() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let point = mount.path("prod/web/now-1")
        try mustRun(["mkdir", point], timeout: 10)
        let status = { () throws -> String in
            let text = try mustRun(["cat", "\(point)/point.json"], timeout: 10)
            let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            return json?["status"] as? String ?? ""
        }
        XCTAssertTrue(["Creating", "Active"].contains(try status()))
        XCTAssertTrue(try eventually(timeout: 60) { try status() == "Active" })
        try mustRun(["cmp", "\(point)/root.img", fixture.disk.path], timeout: 60)
        let made = try XCTUnwrap(fixture.ctl.json("points").first { $0["name"] as? String == "now-1" })
        XCTAssertEqual(made["scheduleType"] as? String, "Manual")
        XCTAssertEqual(made["type"] as? String, "Full")

        for (path, message) in [
            (point, "File exists"), (mount.path("prod/web/bad name"), "Invalid argument"),
            (mount.path("prod/not-a-point"), "Operation not permitted"),
            (mount.path("prod/nosuch/x"), "No such file or directory"),
        ] {
            let result = try runCommand(["mkdir", path], timeout: 10)
            XCTAssertNotEqual(result.status, 0, path)
            XCTAssertTrue(result.stderr.contains(message), "\(path): \(result.stderr)")
        }

        try mustRun(["rmdir", point], timeout: 10)
        XCTAssertFalse(try mount.exists("prod/web/now-1"))
        XCTAssertEqual(
            try fixture.ctl.json("history").first { $0["name"] as? String == "now-1" }?["deletion"] as? String,
            "Soft deleted")
        try fixture.ctl.run("undelete", "web/now-1")
        XCTAssertTrue(try eventually(timeout: 2.5) { try mount.exists("prod/web/now-1") })
    }

    func testRmdirOfAPointOthersDependOnIsRefused() throws {
        let fixture = try MountFixture(policyPoints: 2)
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let result = try runCommand(["rmdir", mount.path("prod/web/\(fixture.names[0])")], timeout: 10)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("busy"), result.stderr)
        XCTAssertEqual(try fixture.ctl.json("points").count, 2)
    }

    func testChangesByOtherProcessesAppearWithoutRemount() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let dir = mount.path("prod/web/from-vaultctl")
        XCTAssertFalse(try mount.exists("prod/web/from-vaultctl"))
        try fixture.ctl.run("backup", "web", "--name", "from-vaultctl")
        XCTAssertTrue(try eventually(timeout: 2.5) { try mount.exists("prod/web/from-vaultctl/root.img") })
        try mustRun(["cmp", "\(dir)/root.img", fixture.disk.path], timeout: 60)
        try fixture.ctl.run("delete", "web/from-vaultctl")
        XCTAssertTrue(try eventually(timeout: 2.5) { try !mount.exists("prod/web/from-vaultctl") })
    }

    func testDamagedChunkGivesEIOForItsRangeOnly() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let name = fixture.names[0]
        let repository = try fixture.repository()
        let point = try repository.catalog.point(matching: "web/\(name)")
        let flat = try repository.flatten(point: point.id, disk: "root")
        var counts: [ChunkHash: Int] = [:]
        for case .data(let hash) in flat.refs { counts[hash, default: 0] += 1 }
        func unique(_ p: Int) -> ChunkHash? {
            guard p >= 0, p < flat.refs.count, case .data(let hash) = flat.refs[p], counts[hash] == 1 else {
                return nil
            }
            return hash
        }
        let position = try XCTUnwrap(
            (1..<(flat.refs.count - 1)).first { unique($0 - 1) != nil && unique($0) != nil && unique($0 + 1) != nil })
        let chunkFile = "\(fixture.ctl.repository)/chunks/\(unique(position)!.hex.prefix(2))/\(unique(position)!.hex)"
        chmod(chunkFile, 0o644)
        var bytes = try readBytes(chunkFile)
        bytes[bytes.count / 2] ^= 0x55
        XCTAssertTrue(FileManager.default.createFile(atPath: chunkFile, contents: Data(bytes)))

        let mount = try fixture.mount()
        defer { mount.unmount() }
        let expected = try readBytes(fixture.asItWas[name]!)
        let chunk = flat.chunkSize
        let image = mount.path("prod/web/\(name)/root.img")
        func read(_ offset: Int, _ count: Int) throws -> ReadOutcome {
            try mount.io {
                let fd = open(image, O_RDONLY)
                defer { close(fd) }
                var buffer = [UInt8](repeating: 0, count: count)
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
                return n < 0 ? .error(errno) : .bytes(Array(buffer.prefix(n)))
            }
        }
        let start = position * chunk
        XCTAssertEqual(try read(start, 4096), .error(EIO))
        XCTAssertEqual(try read(start + chunk - 4096, 4096), .error(EIO))
        XCTAssertEqual(try read(start - 4096, 4096), .bytes(Array(expected[(start - 4096)..<start])))
        XCTAssertEqual(try read(start + chunk, 4096), .bytes(Array(expected[(start + chunk)..<(start + chunk + 4096)])))
        XCTAssertEqual(try read(start - chunk, chunk), .bytes(Array(expected[(start - chunk)..<start])))
        XCTAssertEqual(try read(0, 4096), .bytes(Array(expected[0..<4096])))
        XCTAssertTrue(mount.isRunning)
        XCTAssertTrue(
            ["fails its checksum", "does not decompress", "fails its authentication"].contains {
                mount.logText.contains($0)
            }, mount.logText)
    }

    func testEachDiskOfAPointIsAnImageAndADiskBackupShowsOnlyItsDisks() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let data = fixture.scratch.file("data.raw")
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: data,
                contents: Data(pseudoRandomBytes(3 << 20, seed: 9) + [UInt8](repeating: 0, count: 2 << 20))))
        try fixture.ctl.run(
            "server", "add", "db", "--vault", "prod", "--disk", "root=\(fixture.disk.path)", "--disk", "data=\(data)")
        try fixture.ctl.run("backup", "db", "--name", "both")
        try fixture.ctl.run("backup", "db", "--name", "data-only", "--disk", "data")
        let mount = try fixture.mount()
        defer { mount.unmount() }
        XCTAssertEqual(
            try mustRun(["ls", mount.path("prod/db/both")], timeout: 10), "data.img\nfiles\npoint.json\nroot.img\n")
        XCTAssertEqual(
            try mustRun(["ls", mount.path("prod/db/data-only")], timeout: 10), "data.img\nfiles\npoint.json\n")
        try mustRun(["cmp", mount.path("prod/db/both/root.img"), fixture.disk.path], timeout: 60)
        try mustRun(["cmp", mount.path("prod/db/both/data.img"), data], timeout: 60)
        try mustRun(["cmp", mount.path("prod/db/data-only/data.img"), data], timeout: 60)
    }

    func testFailedPointShowsItsErrorAndNoImages() throws {
        let fixture = try MountFixture(policyPoints: 1)
        try fixture.ctl.run(
            "server", "add", "gone", "--vault", "prod", "--disk", "root=\(fixture.scratch.file("missing.img"))")
        XCTAssertEqual(try fixture.ctl.attempt(["schedule", "run", "--once", "--now", "2030-01-01T20:00"]).status, 1)
        let failed = try XCTUnwrap(fixture.ctl.json("points", "gone").first)
        XCTAssertEqual(failed["status"] as? String, "Error")
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let dir = mount.path("prod/gone/\(failed["name"] as! String)")
        XCTAssertEqual(try mustRun(["ls", dir], timeout: 10), "point.json\n")
        let json = try mustRun(["cat", "\(dir)/point.json"], timeout: 10)
        XCTAssertTrue(json.contains("\"status\" : \"Error\""), json)
        XCTAssertTrue(json.contains("missing.img"), json)
        XCTAssertFalse(try mount.exists("prod/gone/latest"))
    }

    func testASequentialReaderGetsFourMiBOfKernelReadAhead() throws {
        // Four 1 MiB requests in flight keep both the decoding and the kernel's copy busy on
        // every core (see Mount.readAheadKiB); the mount sets it on its own bdi.
        let fixture = try MountFixture(policyPoints: 1)
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let device = try mustRun(["mountpoint", "-d", mount.path("")], timeout: 10).trimmingCharacters(
            in: .whitespacesAndNewlines)
        let readAhead = try String(contentsOfFile: "/sys/class/bdi/\(device)/read_ahead_kb", encoding: .utf8)
        XCTAssertEqual(readAhead.trimmingCharacters(in: .whitespacesAndNewlines), "4096")
        try mustRun(
            ["cmp", mount.path("prod/web/\(fixture.names[0])/root.img"), fixture.asItWas[fixture.names[0]]!],
            timeout: 60)
    }

    func testWritesAreRefusedAsReadOnly() throws {
        let fixture = try MountFixture(policyPoints: 1)
        let mount = try fixture.mount()
        defer { mount.unmount() }
        let image = mount.path("prod/web/\(fixture.names[0])/root.img")
        for command in [
            ["touch", mount.path("prod/web/new-file")], ["sh", "-c", "echo x >> \(image)"],
            ["rm", "-f", image], ["mv", image, image + ".old"], ["ln", "-s", "x", mount.path("prod/web/link")],
            ["truncate", "-s", "0", image], ["rmdir", mount.path("prod")],
        ] {
            let result = try runCommand(command, timeout: 10)
            XCTAssertNotEqual(result.status, 0, "\(command)")
            XCTAssertTrue(result.stderr.contains("Read-only file system"), "\(command): \(result.stderr)")
        }
        try mustRun(["cmp", image, fixture.asItWas[fixture.names[0]]!], timeout: 60)
    }
}

/// Local time as `--now` takes it.
func isoLocal(_ date: Date) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
    return formatter.string(from: date)
}

/// What one read through the mount gave.
enum ReadOutcome: Equatable {
    case bytes([UInt8])
    case error(Int32)
}
