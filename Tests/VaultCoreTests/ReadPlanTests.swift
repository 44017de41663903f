import XCTest

@testable import VaultCore

/// Which chunks a changed-block source reads: extents map to the chunks they touch, a discard
/// zeroes the chunks it covers whole and reads the ones it covers in part.
final class ReadPlanTests: XCTestCase {
    let mib: Int64 = 1 << 20

    func testExtentsMapToEveryChunkTheyTouchOnce() {
        let extents: [(offset: Int64, length: Int64)] = [
            (0, 4096), (mib - 1, 2), (3 * mib, mib), (3 * mib + 10, 5), (9 * mib, 0), (100 * mib, mib),
        ]
        XCTAssertEqual(ReadPlan.positions(touching: extents, chunkSize: Int(mib), count: 10), [0, 1, 3])
    }

    func testADiscardZeroesWholeChunksAndReadsItsEdges() {
        let size = 10 * mib
        let discard = RbdImage.Extent(offset: mib + 4096, length: 3 * mib, exists: false)
        XCTAssertEqual(RbdCapture.wholeChunks(discard, chunkSize: Int(mib), size: size), [2, 3])
        XCTAssertEqual(
            RbdCapture.partialEdges(discard, chunkSize: Int(mib), size: size).map(\.offset).sorted(), [mib, 4 * mib])
        let aligned = RbdImage.Extent(offset: 2 * mib, length: 2 * mib, exists: false)
        XCTAssertEqual(RbdCapture.wholeChunks(aligned, chunkSize: Int(mib), size: size), [2, 3])
        XCTAssertTrue(RbdCapture.partialEdges(aligned, chunkSize: Int(mib), size: size).isEmpty)
        // The disk's short last chunk is covered whole by a discard to the disk's end.
        let tail = RbdImage.Extent(offset: 9 * mib, length: mib, exists: false)
        XCTAssertEqual(RbdCapture.wholeChunks(tail, chunkSize: Int(mib), size: size - 4096), [9])
        let inside = RbdImage.Extent(offset: 5 * mib + 10, length: 100, exists: false)
        XCTAssertEqual(RbdCapture.wholeChunks(inside, chunkSize: Int(mib), size: size), [])
        XCTAssertEqual(RbdCapture.partialEdges(inside, chunkSize: Int(mib), size: size).map(\.offset), [5 * mib])
    }

    func testRbdNamesAreCheckedAndPathsAreNotImages() throws {
        let spec = try XCTUnwrap(try RbdSpec(source: "rbd:rbd/web-01.root_disk"))
        XCTAssertEqual(spec.pool, "rbd")
        XCTAssertEqual(spec.image, "web-01.root_disk")
        XCTAssertNil(try RbdSpec(source: "/dev/vda"))
        for bad in [
            "rbd:", "rbd:pool", "rbd:/x", "rbd:p/", "rbd:p/x/y", "rbd:p/x y", "rbd:p/x@s", "rbd:p/.x", "rbd:p/é",
        ] {
            XCTAssertThrowsError(try RbdSpec(source: bad), bad)
        }
        XCTAssertThrowsError(try CephAccess(conf: "ceph.conf").check())
        XCTAssertThrowsError(try CephAccess(id: "a\nb").check())
        XCTAssertNoThrow(try CephAccess(conf: "/etc/ceph/ceph.conf", id: "backup").check())
    }

    func testNbdExportsAreCheckedAndAHostFileKeepsTheirBitmap() throws {
        let spec = try XCTUnwrap(try NbdSpec(source: "nbd+unix:///root?socket=/run/vm1.nbd"))
        XCTAssertEqual(spec.export, "root")
        XCTAssertEqual(spec.socket, "/run/vm1.nbd")
        XCTAssertEqual(spec.description, "nbd+unix:///root?socket=/run/vm1.nbd")
        for bad in [
            "nbd://h/root", "nbd+unix:///root", "nbd+unix:///root?sock=/s", "nbd+unix:///r t?socket=/s",
            "nbd+unix:///root?socket=s", "nbd+unix:///root?socket=/a#b", "nbd+unix:///root?socket=/a\nb",
        ] {
            XCTAssertThrowsError(try NbdSpec(source: bad), bad)
        }
        let text = "disk root = nbd+unix:///root?socket=/run/vm1.nbd\nbitmap = vaultfs\nqmp = /run/vm1.qmp\n"
        let host = try HostServers.parse(text, file: "vm1.conf")
        XCTAssertEqual(host.bitmap, DirtyBitmap(name: "vaultfs", qmp: "/run/vm1.qmp"))
        XCTAssertThrowsError(try HostServers.parse("bitmap = vaultfs\n", file: "vm1.conf"))
        XCTAssertThrowsError(try HostServers.parse("bitmap = a b\nqmp = /q\n", file: "vm1.conf"))
    }

    func testBitmapsAreKeptFromTheOldestParentOnAndSnapshotsOnlyForParents() throws {
        let day = Date(timeIntervalSince1970: 1_800_000_000)
        func point(_ id: String, _ hours: Double, chain: String, _ schedule: ScheduleType = .policy) -> Point {
            Point(
                id: id, serverId: 1, serverName: "vm1", vaultId: 1, vaultName: "prod", name: id, description: "",
                kind: id == chain ? .full : .incremental, schedule: schedule, status: .active, error: nil,
                parentId: nil, chainId: chain, slot: nil, startedAt: day.addingTimeInterval(hours * 3600),
                finishedAt: nil, deletion: .none, deletedAt: nil, progressDone: 0, progressTotal: 0)
        }
        // A policy chain a, b, c; a manual full m between b and c.
        let kept = KeptPoints([
            point("a", 0, chain: "a"), point("b", 1, chain: "a"), point("m", 1.5, chain: "m", .manual),
            point("c", 2, chain: "a"),
        ])
        XCTAssertEqual(kept.parents, ["c", "m"])
        XCTAssertEqual(kept.recent, ["c", "m"])
        XCTAssertEqual(kept.known, ["a", "b", "c", "m"])
        let older = KeptPoints([
            point("m", 0, chain: "m", .manual), point("a", 1, chain: "a"), point("b", 2, chain: "a"),
        ])
        XCTAssertEqual(older.parents, ["b", "m"])
        // The bitmaps from m on: a's and b's together hold the changes since m.
        XCTAssertEqual(older.recent, ["a", "b", "m"])
    }

    func testAHostFileKeepsHowItReachesCeph() throws {
        let text = "disk root = rbd:rbd/web\nceph-conf = /etc/ceph/other.conf\nceph-id = backup\n"
        let host = try HostServers.parse(text, file: "web.conf")
        XCTAssertEqual(host.disks, [HostServer.Disk(name: "root", path: "rbd:rbd/web")])
        XCTAssertEqual(host.ceph, CephAccess(conf: "/etc/ceph/other.conf", id: "backup"))
        XCTAssertThrowsError(try HostServers.parse("disk root = rbd:rbd\n", file: "web.conf"))
        XCTAssertThrowsError(try HostServers.parse("ceph-id = a;b\n", file: "web.conf"))
    }
}
