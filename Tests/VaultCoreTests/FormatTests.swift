import TestSupport
import XCTest

@testable import VaultCore

final class FormatTests: XCTestCase {
    func testChunkMapRoundTrips() throws {
        let hash = ChunkHash(bytes: pseudoRandomBytes(32, seed: 3))
        let map = ChunkMap(
            kind: .incremental, chunkSize: 65536, diskSize: 200_000,
            entries: [.init(position: 0, ref: .zero), .init(position: 3, ref: .data(hash))])
        XCTAssertEqual(try ChunkMap.decode(map.encoded()), map)
    }

    func testDamagedChunkMapIsRefused() throws {
        let map = ChunkMap(kind: .full, chunkSize: 65536, diskSize: 65536, entries: [.init(position: 0, ref: .zero)])
        var bytes = map.encoded()
        bytes[40] ^= 1
        XCTAssertThrowsError(try ChunkMap.decode(bytes)) { XCTAssertEqual(($0 as? VaultError)?.code, .corrupt) }
    }

    func testChunkHashHexRoundTrips() {
        let hash = ChunkHash(bytes: pseudoRandomBytes(32, seed: 9))
        XCTAssertEqual(ChunkHash(hex: hash.hex), hash)
        XCTAssertEqual(hash.hex.count, 64)
    }

    func testStoredChunkReadsBackAndDamageIsDetected() throws {
        let fixture = try Fixture()
        let point = try fixture.backup("one")
        let image = try fixture.repository.flatten(point: point.id, disk: "root")
        guard
            let (position, hash) = image.refs.enumerated().lazy.compactMap({ i, ref -> (Int, ChunkHash)? in
                if case .data(let h) = ref { return (i, h) } else { return nil }
            }).first
        else { return XCTFail("no data chunk") }
        var buffer = [UInt8](repeating: 0, count: image.length(of: position))
        try buffer.withUnsafeMutableBytes { try fixture.repository.chunks.load(hash, into: $0) }

        let path = fixture.repository.chunks.location(of: hash)
        chmod(path, 0o644)
        var bytes = try readBytes(path)
        bytes[bytes.count - 1] ^= 0xff
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        XCTAssertThrowsError(try buffer.withUnsafeMutableBytes { try fixture.repository.chunks.load(hash, into: $0) }) {
            XCTAssertEqual(($0 as? VaultError)?.code, .corrupt)
        }
    }

    /// Level 1 (the default) compresses with a smaller hash table than zstd's own; its frames
    /// must decode to the same bytes and carry the checksums reads check.
    func testLevelOneFramesDecodeAndCarryTheirChecksums() throws {
        let text = Array((0..<20_000).map { "line \($0 % 977) of a text file\n" }.joined().utf8)
        let plain = text + pseudoRandomBytes(3 * ChunkFile.frameSize, seed: 5) + [UInt8](repeating: 0, count: 5000)
        for level in [1, 3] {
            let compressor = ZstdCompressor(level: level)
            XCTAssertEqual(compressor.hashLog, level == 1 ? ZstdCompressor.levelOneHashLog : 0)
            var out: [UInt8] = []
            let lengths = try plain.withUnsafeBytes {
                try compressor.compressFrames($0, frameSize: ChunkFile.frameSize, into: &out)
            }
            XCTAssertEqual(lengths.count, ChunkFile.frameCount(plain.count))
            var start = 0
            for (i, length) in lengths.enumerated() {
                let frame = Array(out[start..<(start + length)])
                XCTAssertNotNil(
                    frame.withUnsafeBytes { ChunkFile.frameCheck($0) }, "frame \(i) at level \(level) has no checksum")
                var decoded = [UInt8](repeating: 0, count: ChunkFile.frameLength(i, of: plain.count))
                let ok = frame.withUnsafeBytes { source in
                    decoded.withUnsafeMutableBytes { ZstdDecompressor().decompress(source, into: $0) }
                }
                XCTAssertTrue(ok, "frame \(i) at level \(level) does not decode")
                XCTAssertEqual(
                    decoded, Array(plain[(i * ChunkFile.frameSize)..<(i * ChunkFile.frameSize + decoded.count)]))
                start += length
            }
            XCTAssertLessThan(start, plain.count / 2, "level \(level) should compress the text")
        }
    }

    func testChunksOfTheFirstFormatStayReadable() throws {
        let fixture = try Fixture(chunkSize: 1 << 20)
        let point = try fixture.backup("one")
        let image = try fixture.repository.flatten(point: point.id, disk: "root")
        let (position, hash) = try XCTUnwrap(
            image.refs.enumerated().lazy.compactMap { i, ref -> (Int, ChunkHash)? in
                if case .data(let h) = ref, image.length(of: i) == image.chunkSize { return (i, h) } else { return nil }
            }.first)
        var plain = [UInt8](repeating: 0, count: image.length(of: position))
        try plain.withUnsafeMutableBytes { try fixture.repository.chunks.load(hash, into: $0) }
        // Rewrite it as format 1 wrote raw chunks: a version-1 header and the plain bytes.
        var v1 = ChunkFile.magic + [1, 0, 0, 0] + ChunkFile.littleEndian(UInt32(plain.count))
        v1 += ChunkFile.littleEndian(UInt32(plain.count)) + hash.bytes + plain
        let path = fixture.repository.chunks.location(of: hash)
        unlink(path)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(v1)))
        let cache = ChunkCache(store: fixture.repository.chunks, budget: 8 << 20)
        XCTAssertEqual(
            try cache.frames(hash, length: plain.count, 1..<2)[0],
            Array(plain[ChunkFile.frameSize..<(2 * ChunkFile.frameSize)]))
        XCTAssertEqual(try fixture.exported(point), try readBytes(fixture.disk.path))
        XCTAssertNil(fixture.repository.chunks.verify(hash))
    }

    /// Manifests are the repository's format, read by other hosts and other versions: they
    /// keep the first release's fields whatever the catalog's tables or the core's values
    /// become (later ones are only added, and optional: older readers skip them), and files of
    /// the first release (catalog ids and all) read back.
    func testManifestsKeepTheFirstReleasesFields() throws {
        let fixture = try Fixture()
        try fixture.repository.setPolicy(
            try Policy(startMinute: 90, everyHours: 6, incrementals: 3, keepFulls: 2, since: Date()),
            vault: "prod")
        let point = try fixture.backup("first")
        let root = fixture.repository.root
        func keys(_ path: String, _ member: String) throws -> [String: Set<String>] {
            let object = try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(readBytes("\(root)/manifests/\(path)"))) as? [String: Any])
            var found = ["": Set(object.keys)]
            if let inner = object[member] as? [String: Any] { found[member] = Set(inner.keys) }
            if let list = object["disks"] as? [[String: Any]], let first = list.first {
                found["disks"] = Set(first.keys)
            }
            return found
        }
        XCTAssertEqual(
            try keys("vaults/prod.json", "vault"),
            [
                "": ["format", "vault"],
                "vault": [
                    "name", "createdAt", "policyStartMinute", "policyEveryHours", "policyIncrementals",
                    "policyKeepFulls", "policySince",
                ],
            ])
        XCTAssertEqual(
            try keys("servers/web.json", "server"),
            [
                "": ["format", "server", "vault", "disks"], "server": ["name", "hooks", "createdAt"],
                "disks": ["serverId", "name", "path"],
            ])
        XCTAssertEqual(
            try keys("points/\(point.id).json", "point"),
            [
                "": ["format", "point", "tags", "disks"],
                "point": [
                    "id", "serverId", "serverName", "vaultId", "vaultName", "name", "description", "kind", "schedule",
                    "status",
                    "chainId", "startedAt", "finishedAt", "deletion", "progressDone", "progressTotal",
                ],
                // bytesRead: added with changed-block sources (frozenMs and warning, too, when set).
                "disks": ["pointId", "disk", "size", "dataBytes", "changedBytes", "newBytes", "bytesRead"],
            ])

        // As the first release wrote them: with the writing catalog's ids, which mean nothing here.
        let vault =
            #"{"format":1,"vault":{"id":7,"name":"prod","createdAt":0,"policyStartMinute":60,"policyEveryHours":4,"policyIncrementals":2,"policyKeepFulls":3,"policySince":0}}"#
        let server =
            #"{"format":1,"server":{"id":9,"name":"web","vaultId":7,"hooks":false,"createdAt":0},"vault":"prod","disks":[{"id":4,"serverId":9,"name":"root","path":"/dev/vdb"}]}"#
        try Data(vault.utf8).write(to: URL(fileURLWithPath: "\(root)/manifests/vaults/prod.json"))
        try Data(server.utf8).write(to: URL(fileURLWithPath: "\(root)/manifests/servers/web.json"))
        let read = try XCTUnwrap(try fixture.repository.manifests.vault("prod"))
        XCTAssertEqual(read.policy?.everyHours, 4)
        XCTAssertEqual(read.policy?.keepFulls, 3)
        let web = try XCTUnwrap(try fixture.repository.manifests.server("web"))
        XCTAssertEqual(web.vault, "prod")
        XCTAssertEqual(web.disks.map(\.path), ["/dev/vdb"])

        // A point of the first release, without the fields added since, reads back.
        let pointPath = "\(root)/manifests/points/\(point.id).json"
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(readBytes(pointPath))) as? [String: Any])
        object["disks"] = (object["disks"] as? [[String: Any]])?.map { $0.filter { $0.key != "bytesRead" } }
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: pointPath))
        let old = try XCTUnwrap(try fixture.repository.manifests.point(point.id))
        XCTAssertNil(old.disks.first?.bytesRead)
        XCTAssertEqual(old.disks.first?.size, try fixture.repository.catalog.pointDisks(point.id).first?.size)
    }

    func testRepositoryOfNewerFormatIsRefused() throws {
        let fixture = try Fixture()
        let path = "\(fixture.repository.root)/repository.json"
        let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(
            of: "\"format\" : \(RepositoryConfig.currentFormat)", with: "\"format\" : 99")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Repository(path: fixture.repository.root)) {
            XCTAssertEqual(($0 as? VaultError)?.code, .unsupportedFormat)
        }
    }

    func testPathThatIsNotARepositoryIsRefused() {
        let scratch = Scratch()
        XCTAssertThrowsError(try Repository(path: scratch.path)) {
            XCTAssertEqual(($0 as? VaultError)?.code, .notARepository)
        }
    }
}

final class NameRuleTests: XCTestCase {
    func testPointNamesAllowLettersDigitsUnderscoreAndHyphen() throws {
        try Names.validatePointName("nightly_db-01")
        try Names.validatePointName(String(repeating: "a", count: 255))
        for bad in ["", "has space", "dot.name", "slash/name", String(repeating: "a", count: 256), "ümlaut", "latest"] {
            XCTAssertThrowsError(try Names.validatePointName(bad), bad)
        }
    }

    func testDefaultNameIsManualbkAndFourHexDigits() {
        let name = Names.defaultManualName()
        XCTAssertNotNil(name.range(of: "^manualbk_[0-9a-f]{4}$", options: .regularExpression), name)
    }

    func testSeveralServersGetNumberedSuffixes() throws {
        XCTAssertEqual(try Names.namesForServers(base: "backup", count: 2), ["backup-0001", "backup-0002"])
        XCTAssertEqual(try Names.namesForServers(base: "backup", count: 1), ["backup"])
        XCTAssertThrowsError(try Names.namesForServers(base: String(repeating: "a", count: 253), count: 2))
    }

    func testTagRules() throws {
        XCTAssertEqual(try Names.parseTags(["Key_0001=Value_0001", "empty="]).map(\.value), ["Value_0001", ""])
        XCTAssertThrowsError(try Names.parseTags((0...10).map { "k\($0)=v" }))
        XCTAssertThrowsError(try Names.parseTags([String(repeating: "k", count: 37) + "=v"]))
        XCTAssertThrowsError(try Names.parseTags(["k=" + String(repeating: "v", count: 44)]))
        XCTAssertThrowsError(try Names.parseTags(["k=v v"]))
        XCTAssertThrowsError(try Names.parseTags(["novalue"]))
        XCTAssertThrowsError(try Names.parseTags(["k=1", "k=2"]))
    }

    func testDescriptionAtMost255Characters() throws {
        try Names.validateDescription(String(repeating: "d", count: 255))
        XCTAssertThrowsError(try Names.validateDescription(String(repeating: "d", count: 256)))
    }
}

final class UpgradeTests: XCTestCase {
    /// A repository as format 1 left it: no manifests, format 1 in repository.json, folders
    /// readable by others. Opening it for writing upgrades it in place.
    func testFormatOneRepositoryIsUpgradedAndItsCatalogCanThenBeRebuilt() throws {
        let fixture = try Fixture()
        let point = try fixture.backup("one")
        let expected = try fixture.exported(point)
        let root = fixture.repository.root
        try FileManager.default.removeItem(atPath: "\(root)/manifests")
        let path = "\(root)/repository.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
            .replacingOccurrences(of: "\"format\" : \(RepositoryConfig.currentFormat)", with: "\"format\" : 1")
        unlink(path)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(root, 0o755)

        let upgraded = try Repository(path: root)
        XCTAssertEqual(upgraded.config.format, RepositoryConfig.currentFormat)
        XCTAssertEqual(
            try String(contentsOfFile: path, encoding: .utf8).contains(
                "\"format\" : \(RepositoryConfig.currentFormat)"), true)
        var st = stat()
        XCTAssertEqual(stat(root, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        XCTAssertEqual(try upgraded.manifests.point(point.id)?.point.status, .active)
        XCTAssertEqual(try upgraded.manifests.allVaults().map(\.name), ["prod"])

        for suffix in ["", "-wal", "-shm"] { unlink("\(root)/catalog.sqlite\(suffix)") }
        let report = try CatalogRebuild.run(repository: root)
        XCTAssertEqual(report.restorable, 1)
        let rebuilt = try Repository(path: root)
        let out = fixture.scratch.file("after.img")
        let target = try ExportTarget.open(out)
        _ = try rebuilt.export(point: try rebuilt.catalog.point(matching: "web/one"), disk: "root", to: target)
        try target.commit()
        XCTAssertEqual(try readBytes(out), expected)
    }
}
