import Crypto
import Foundation
import TestSupport
import XCTest

@testable import VaultCore

/// The fingerprints a backup keeps so the next incremental hashes only the chunks that changed.
final class FingerprintTests: XCTestCase {
    let chunk = 64 << 10

    /// A server "raw" whose one disk "d" is a plain file of 8 chunks of random bytes.
    private func rawServer(_ fixture: Fixture) throws -> (path: String, serverId: Int64) {
        let path = fixture.scratch.file("raw.img")
        XCTAssertTrue(
            FileManager.default.createFile(atPath: path, contents: Data(pseudoRandomBytes(8 * chunk, seed: 5))))
        try fixture.repository.addServer(named: "raw", vault: "prod", disks: [("d", path)], now: Date())
        return (path, try fixture.repository.catalog.server(named: "raw").id)
    }

    private func backup(_ fixture: Fixture, _ name: String, parent: Point? = nil) throws -> Point {
        try backup(fixture.repository, server: "raw", name, parent: parent)
    }

    /// A backup now, or a policy incremental on `parent`, which must end active.
    private func backup(_ repository: Repository, server: String, _ name: String, parent: Point? = nil) throws -> Point
    {
        var plan = BackupPlan.manual(server: server, name: name)
        if let parent {
            plan.kind = .incremental
            plan.schedule = .policy
            plan.parentId = parent.id
        }
        let point = try repository.prepareBackup(plan).run()
        XCTAssertEqual(point.status, .active, point.error ?? "")
        return point
    }

    /// Overwrites chunk `position` of the file with new random bytes.
    private func change(_ path: String, position: Int, seed: UInt64) throws -> [UInt8] {
        let bytes = pseudoRandomBytes(chunk, seed: seed)
        let fd = open(path, O_WRONLY)
        defer { close(fd) }
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(position * chunk)) }, chunk)
        return bytes
    }

    private func changedPositions(_ fixture: Fixture, _ point: Point) throws -> [Int] {
        try fixture.repository.maps.read(point: point.id, disk: "d").entries.map(\.position)
    }

    func testAnIncrementalFindsTheSameChangesWithOrWithoutFingerprints() throws {
        let fixture = try Fixture()
        let (path, server) = try rawServer(fixture)
        let full = try backup(fixture, "full")
        XCTAssertNotNil(
            fixture.repository.fingerprints.load(server: server, point: full.id, disk: "d", chunkSize: chunk))
        _ = try change(path, position: 2, seed: 40)
        _ = try change(path, position: 6, seed: 41)
        let quick = try backup(fixture, "quick", parent: full)
        XCTAssertEqual(try changedPositions(fixture, quick), [2, 6])

        Posix.removeTree(fixture.scratch.file("repo/fingerprints"))
        let hashed = try backup(fixture, "hashed", parent: full)
        XCTAssertEqual(
            try fixture.repository.maps.read(point: hashed.id, disk: "d"),
            try fixture.repository.maps.read(point: quick.id, disk: "d"))
        XCTAssertEqual(try fixture.exported(quick, disk: "d"), try readBytes(path))
    }

    /// Shows the fingerprints are what decides: a chunk whose kept fingerprint is made to match
    /// its new bytes is taken as unchanged (the parent's bytes come back), and once the kept
    /// file is damaged, every chunk is hashed and the change is found.
    func testTheParentsFingerprintsDecideWhichChunksAreHashed() throws {
        let fixture = try Fixture()
        let (path, server) = try rawServer(fixture)
        let store = fixture.repository.fingerprints
        let full = try backup(fixture, "full")
        let old = try readBytes(path)
        let new3 = try change(path, position: 3, seed: 50)
        _ = try change(path, position: 5, seed: 51)

        var kept = try XCTUnwrap(store.load(server: server, point: full.id, disk: "d", chunkSize: chunk))
        kept.prints[3] = new3.withUnsafeBytes { Fingerprint(of: $0, key: kept.key) }
        try store.save(kept, server: server)
        let fooled = try backup(fixture, "fooled", parent: full)
        XCTAssertEqual(try changedPositions(fixture, fooled), [5])
        XCTAssertTrue(
            try fixture.exported(fooled, disk: "d")[(3 * chunk)..<(4 * chunk)] == old[(3 * chunk)..<(4 * chunk)],
            "chunk 3 does not hold the parent's bytes")

        // The full is no longer its chain's newest point, so its file went; put it back, damaged.
        XCTAssertNil(store.load(server: server, point: full.id, disk: "d", chunkSize: chunk))
        try store.save(kept, server: server)
        let file = fixture.scratch.file("repo/fingerprints/server-\(server)/\(full.id)/d")
        var bytes = try readBytes(file)
        bytes[200] ^= 1
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data(bytes)))
        XCTAssertNil(store.load(server: server, point: full.id, disk: "d", chunkSize: chunk))
        let hashed = try backup(fixture, "hashed", parent: full)
        XCTAssertEqual(try changedPositions(fixture, hashed), [3, 5])
        XCTAssertEqual(try fixture.exported(hashed, disk: "d"), try readBytes(path))
    }

    func testFingerprintsOfAnotherPointOrChunkSizeAreNotUsed() throws {
        let fixture = try Fixture()
        let (_, server) = try rawServer(fixture)
        let store = fixture.repository.fingerprints
        let full = try backup(fixture, "full")
        let kept = try XCTUnwrap(store.load(server: server, point: full.id, disk: "d", chunkSize: chunk))
        XCTAssertEqual(kept.prints.count, 8)
        XCTAssertFalse(kept.prints.contains(.none))
        XCTAssertNil(store.load(server: server, point: full.id, disk: "d", chunkSize: 2 * chunk))
        // A file renamed to another point's name names its own point inside.
        let folder = fixture.scratch.file("repo/fingerprints/server-\(server)")
        let other = UUID().uuidString.lowercased()
        XCTAssertEqual(mkdir("\(folder)/\(other)", 0o700), 0)
        XCTAssertEqual(link("\(folder)/\(full.id)/d", "\(folder)/\(other)/d"), 0)
        XCTAssertNil(store.load(server: server, point: other, disk: "d", chunkSize: chunk))
    }

    func testFingerprintsAreOwnerOnlyAndSealedInAnEncryptedRepository() throws {
        let fixture = try Fixture()
        let (_, server) = try rawServer(fixture)
        let full = try backup(fixture, "full")
        let folder = fixture.scratch.file("repo/fingerprints")
        for (path, mode) in [
            (folder, 0o700), ("\(folder)/server-\(server)", 0o700), ("\(folder)/server-\(server)/\(full.id)", 0o700),
            ("\(folder)/server-\(server)/\(full.id)/d", 0o600),
        ] {
            var st = stat()
            XCTAssertEqual(stat(path, &st), 0, path)
            XCTAssertEqual(Int(st.st_mode & 0o777), mode, path)
        }
        XCTAssertEqual(Array(try readBytes("\(folder)/server-\(server)/\(full.id)/d").prefix(8)), Fingerprints.magic)

        let scratch = Scratch("fingerprints-sealed")
        let sealed = try Repository.create(
            at: scratch.file("repo"), chunkSize: chunk, compressionLevel: 3, encryption: .passphrase("secret words"))
        let disk = scratch.file("d.img")
        XCTAssertTrue(
            FileManager.default.createFile(atPath: disk, contents: Data(pseudoRandomBytes(4 * chunk, seed: 9))))
        try sealed.createVault(named: "v", policy: nil, now: Date())
        try sealed.addServer(named: "s", vault: "v", disks: [("d", disk)], now: Date())
        let point = try backup(sealed, server: "s", "one")
        let id = try sealed.catalog.server(named: "s").id
        let kept = try XCTUnwrap(sealed.fingerprints.load(server: id, point: point.id, disk: "d", chunkSize: chunk))
        let file = try readBytes(scratch.file("repo/fingerprints/server-\(id)/\(point.id)/d"))
        XCTAssertNotEqual(Array(file.prefix(8)), Fingerprints.magic)
        let key = kept.key.withUnsafeBytes { Array($0) }
        XCTAssertFalse(
            (0...(file.count - key.count)).contains { Array(file[$0..<($0 + key.count)]) == key },
            "the key is stored in the clear")

        _ = try change(disk, position: 2, seed: 10)
        let second = try backup(sealed, server: "s", "two", parent: point)
        XCTAssertEqual(try sealed.maps.read(point: second.id, disk: "d").entries.map(\.position), [2])
    }

    func testOnlyPointsThatCanStillBeParentsKeepFingerprintsAndARemovedServerNone() throws {
        let fixture = try Fixture()
        let (path, server) = try rawServer(fixture)
        var chain = [try backup(fixture, "p0")]
        for i in 1...3 {
            _ = try change(path, position: i, seed: UInt64(60 + i))
            chain.append(try backup(fixture, "p\(i)", parent: chain.last!))
        }
        let folder = fixture.scratch.file("repo/fingerprints/server-\(server)")
        XCTAssertEqual(Posix.listDirectory(folder), [chain.last!.id])

        // Backups now (fulls, each a chain of its own) never push out the policy chain's tip.
        var manual: [Point] = []
        for i in 0..<5 { manual.append(try backup(fixture, "now\(i)")) }
        XCTAssertEqual(Set(Posix.listDirectory(folder)), Set([chain.last!.id] + manual.suffix(3).map(\.id)))
        _ = try change(path, position: 7, seed: 70)
        XCTAssertEqual(try changedPositions(fixture, try backup(fixture, "p4", parent: chain.last!)), [7])

        // A link planted in the folder is removed, never followed.
        let outside = fixture.scratch.file("outside")
        XCTAssertEqual(mkdir(outside, 0o700), 0)
        XCTAssertTrue(FileManager.default.createFile(atPath: "\(outside)/keep", contents: Data([1])))
        XCTAssertEqual(symlink(outside, "\(folder)/\(UUID().uuidString.lowercased())"), 0)
        _ = try backup(fixture, "now5")
        XCTAssertTrue(Posix.exists("\(outside)/keep"))
        XCTAssertEqual(Posix.listDirectory(folder).count, 4)

        for point in try fixture.repository.catalog.points(server: server).reversed() {
            _ = try fixture.repository.softDelete(point.id)
        }
        _ = try fixture.repository.purge()
        try fixture.repository.removeServer(named: "raw")
        XCTAssertFalse(Posix.exists(folder))
        XCTAssertTrue(Posix.exists("\(outside)/keep"))
    }

    func testAFailedBackupKeepsNoFingerprints() throws {
        let fixture = try Fixture()
        try fixture.repository.addServer(
            named: "bad", vault: "prod", disks: [("root", fixture.disk.path)],
            hooks: Hooks(freeze: "exit 3"), host: fixture.host, now: Date())
        let server = try fixture.repository.catalog.server(named: "bad").id
        let point = try fixture.repository.prepareBackup(.manual(server: "bad", name: "broken"), host: fixture.host)
            .run()
        XCTAssertEqual(point.status, .failed)
        XCTAssertFalse(Posix.exists(fixture.scratch.file("repo/fingerprints/server-\(server)/\(point.id)")))
    }

    func testAFileOfAnotherDiskOrWithAnImpossibleCountIsNotUsed() throws {
        let fixture = try Fixture()
        let paths = [fixture.scratch.file("a.img"), fixture.scratch.file("b.img")]
        for (i, path) in paths.enumerated() {
            XCTAssertTrue(
                FileManager.default.createFile(
                    atPath: path, contents: Data(pseudoRandomBytes(4 * chunk, seed: UInt64(80 + i)))))
        }
        try fixture.repository.addServer(
            named: "two", vault: "prod", disks: [("a", paths[0]), ("b", paths[1])], now: Date())
        let server = try fixture.repository.catalog.server(named: "two").id
        let point = try fixture.repository.prepareBackup(.manual(server: "two", name: "full")).run()
        XCTAssertEqual(point.status, .active, point.error ?? "")
        let store = fixture.repository.fingerprints
        let a = try XCTUnwrap(store.load(server: server, point: point.id, disk: "a", chunkSize: chunk))
        XCTAssertNotNil(store.load(server: server, point: point.id, disk: "b", chunkSize: chunk))
        let folder = fixture.scratch.file("repo/fingerprints/server-\(server)/\(point.id)")
        XCTAssertEqual(rename("\(folder)/a", "\(folder)/b"), 0)
        XCTAssertNil(store.load(server: server, point: point.id, disk: "b", chunkSize: chunk))

        var bytes = a.encoded()
        bytes.replaceSubrange(64..<72, with: ChunkFile.littleEndian(UInt64(1) << 63))
        bytes.replaceSubrange((bytes.count - 32)..., with: Array(SHA256.hash(data: bytes[0..<(bytes.count - 32)])))
        XCTAssertNil(Fingerprints.decode(bytes))
        XCTAssertEqual(Fingerprints.decode(a.encoded())?.prints, a.prints)
    }
}
