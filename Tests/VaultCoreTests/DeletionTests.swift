import TestSupport
import XCTest

@testable import VaultCore

final class DeletionTests: XCTestCase {
    func testPointWithDependantsCannotBeDeletedAlone() throws {
        let fixture = try Fixture()
        let full = try fixture.backup("full")
        let inc = try fixture.backup("inc", kind: .incremental, parent: full.id)
        XCTAssertThrowsError(try fixture.repository.softDelete(full.id)) {
            XCTAssertEqual(($0 as? VaultError)?.code, .hasDependants)
        }
        _ = try fixture.repository.softDelete(inc.id)
        _ = try fixture.repository.softDelete(full.id)
        XCTAssertThrowsError(try fixture.repository.undelete(inc.id)) {
            XCTAssertEqual(($0 as? VaultError)?.code, .hasDependants)
        }
        _ = try fixture.repository.undelete(full.id)
        _ = try fixture.repository.undelete(inc.id)
        XCTAssertEqual(try fixture.exported(inc), try readBytes(fixture.disk.path))
    }

    func testSoftDeleteUndeleteAndPurgeShowInHistory() throws {
        let fixture = try Fixture()
        let keep = try fixture.backup("keep")
        let asKept = try readBytes(fixture.disk.path)
        try fixture.disk.write("data/other.bin", pseudoRandomBytes(500_000, seed: 4))
        let gone = try fixture.backup("gone")
        let soft = try fixture.backup("soft")
        _ = try fixture.repository.softDelete("web/gone")
        _ = try fixture.repository.softDelete(soft.id)
        _ = try fixture.repository.undelete(soft.id)
        _ = try fixture.repository.softDelete(soft.id)

        var status = Dictionary(uniqueKeysWithValues: try fixture.repository.history().map { ($0.name, $0.deletion) })
        XCTAssertEqual(status, ["keep": "", "gone": "Soft deleted", "soft": "Soft deleted"])
        XCTAssertEqual(try fixture.repository.catalog.points().map(\.name), ["keep"])

        let purged = try fixture.repository.purge().points
        XCTAssertEqual(Set(purged.map(\.id)), [gone.id, soft.id])
        status = Dictionary(uniqueKeysWithValues: try fixture.repository.history().map { ($0.name, $0.deletion) })
        XCTAssertEqual(status, ["keep": "", "gone": "Deleted", "soft": "Deleted"])
        XCTAssertEqual(try fixture.exported(keep), asKept, "purging other points left the kept one intact")
        XCTAssertThrowsError(try fixture.repository.undelete(gone.id))
    }

    func testPurgeFreesChunksNoPointUses() throws {
        let fixture = try Fixture()
        try fixture.backup("one")
        let base = fixture.chunkCount
        try fixture.disk.write("data/big.bin", pseudoRandomBytes(1 << 20, seed: 8))
        let two = try fixture.backup("two")
        XCTAssertGreaterThan(fixture.chunkCount, base)
        _ = try fixture.repository.softDelete(two.id)
        _ = try fixture.repository.purge()
        XCTAssertEqual(fixture.chunkCount, base)
    }

    /// A map of a deleted point that cannot be read is reported, not skipped in silence; in a
    /// folder every chunk is listed, so its unused chunks go all the same.
    func testAnUnreadableMapOfADeletedPointIsReportedAndItsChunksStillFound() throws {
        let fixture = try Fixture()
        try fixture.backup("one")
        let base = fixture.chunkCount
        try fixture.disk.write("data/big.bin", pseudoRandomBytes(1 << 20, seed: 9))
        let two = try fixture.backup("two")
        try fixture.repository.deleteForGood([two], at: Date())
        let map = fixture.scratch.file("repo/maps/\(two.id)/root.map")
        XCTAssertEqual(chmod(map, 0o600), 0)
        try Data("not a map".utf8).write(to: URL(fileURLWithPath: map))
        let result = try GarbageCollector(repository: fixture.repository, grace: 0).collect()
        XCTAssertEqual(result.unreadableMaps.count, 1, "\(result.unreadableMaps)")
        XCTAssertTrue(result.unreadableMaps.first?.hasPrefix(two.id) == true, "\(result.unreadableMaps)")
        XCTAssertEqual(result.removedMaps, 1)
        XCTAssertEqual(fixture.chunkCount, base)
    }

    /// What a dead writer left half-written is found through the store, whatever its backend:
    /// a chunk's or map's temporary at once, a manifest's after an hour, a fresh one never.
    func testCollectionRemovesWhatDeadWritersLeftHalfWritten() throws {
        let fixture = try Fixture()
        try fixture.backup("one")
        let root = fixture.repository.root
        let old = Date().addingTimeInterval(-7200)
        var left: [String] = []
        for (path, age) in [
            ("chunks/ab/x.tmp-1", old), ("maps/y.tmp-2", Date()), ("manifests/points/z.tmp-3", old),
            ("manifests/points/w.tmp-4", Date()),
        ] {
            let file = "\(root)/\(path)"
            try Data("partial".utf8).write(to: URL(fileURLWithPath: file))
            try FileManager.default.setAttributes([.modificationDate: age], ofItemAtPath: file)
            left.append(file)
        }
        let result = try GarbageCollector(repository: fixture.repository, grace: 0).collect()
        XCTAssertEqual(result.removedTemporaries, 3)
        XCTAssertEqual(left.map { FileManager.default.fileExists(atPath: $0) }, [false, false, false, true])
    }

    /// A purge whose collection cannot run (another holds the collection's lock) purges all
    /// the same, and says why the space did not come back, for the command's output.
    func testAPurgeWhoseCollectionCannotRunSaysSo() throws {
        let fixture = try Fixture()
        let point = try fixture.backup("one")
        _ = try fixture.repository.softDelete(point.id)
        var held = try FileLock.tryLock("\(fixture.repository.root)/locks/gc.lock", mode: 0o600)
        XCTAssertNotNil(held)
        let removal = try fixture.repository.purge()
        XCTAssertEqual(removal.points.map(\.id), [point.id])
        XCTAssertTrue(removal.collectionProblem?.contains("did not run") == true, "\(removal)")
        XCTAssertTrue(removal.collectionProblem?.contains("vaultctl gc") == true, "\(removal)")
        held = nil
        let again = try fixture.backup("two")
        _ = try fixture.repository.softDelete(again.id)
        XCTAssertNil(try fixture.repository.purge().collectionProblem)
    }

    func testPurgeOlderThanKeepsRecentlyDeletedPoints() throws {
        let fixture = try Fixture()
        let point = try fixture.backup("recent")
        _ = try fixture.repository.softDelete(point.id)
        XCTAssertTrue(try fixture.repository.purge(olderThan: 3600).points.isEmpty)
        XCTAssertEqual(
            try fixture.repository.purge(olderThan: 3600, now: Date().addingTimeInterval(7200)).points.count, 1)
    }
}
