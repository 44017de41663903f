import TestSupport
import XCTest

@testable import VaultCore

final class BackupTests: XCTestCase {
    func testFullPointExportsByteIdenticalToTheDisk() throws {
        let fixture = try Fixture()
        let point = try fixture.backup("one")
        XCTAssertEqual(try fixture.exported(point), try readBytes(fixture.disk.path))
    }

    func testSecondFullOfUnchangedDiskWritesNoNewChunk() throws {
        let fixture = try Fixture()
        try fixture.backup("one")
        let before = fixture.chunkCount
        let second = try fixture.backup("two")
        XCTAssertEqual(fixture.chunkCount, before)
        XCTAssertEqual(try fixture.repository.catalog.pointDisks(second.id).first?.newBytes, 0)
    }

    func testHolesAreNeverReadAndZeroChunksNeverStored() throws {
        let fixture = try Fixture()
        let path = fixture.scratch.file("sparse.img")
        let chunk = 64 << 10
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        ftruncate(fd, off_t(64 * chunk))
        let data = pseudoRandomBytes(chunk, seed: 5)
        data.withUnsafeBytes { _ = pwrite(fd, $0.baseAddress, chunk, off_t(10 * chunk)) }
        let zeros = [UInt8](repeating: 0, count: 4 * chunk)
        zeros.withUnsafeBytes { _ = pwrite(fd, $0.baseAddress, zeros.count, off_t(20 * chunk)) }
        close(fd)

        let source = try DiskSource(name: "d", path: path, server: "s")
        XCTAssertEqual(source.dataPositions(chunkSize: chunk), [10, 20, 21, 22, 23])

        try fixture.repository.addServer(named: "sparse", vault: "prod", disks: [("d", path)], now: Date())
        let before = fixture.chunkCount
        let point = try fixture.repository.prepareBackup(.manual(server: "sparse", name: "s1")).run()
        XCTAssertEqual(fixture.chunkCount - before, 1)
        let sizes = try XCTUnwrap(fixture.repository.catalog.pointDisks(point.id).first)
        XCTAssertEqual(sizes.dataBytes, Int64(chunk))
        XCTAssertEqual(try fixture.exported(point, disk: "d"), try readBytes(path))
    }

    /// A worker reads a run of positions with one request per stretch of consecutive ones:
    /// runs here hold 64 positions of 64 KiB, and the data has holes between single chunks,
    /// a long stretch across runs, and an end that is not a whole block.
    func testRunsWithHolesBetweenTheirChunksBackUpEveryByte() throws {
        let fixture = try Fixture()
        let path = fixture.scratch.file("runs.img")
        let chunk = 64 << 10
        let size = 200 * chunk + 777
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        ftruncate(fd, off_t(size))
        var written: [Int] = []
        for position in Array(stride(from: 0, to: 60, by: 3)) + Array(61..<140) + [200] {
            let length = min(chunk, size - position * chunk)
            let bytes = pseudoRandomBytes(length, seed: UInt64(100 + position))
            bytes.withUnsafeBytes { _ = pwrite(fd, $0.baseAddress, length, off_t(position * chunk)) }
            written.append(position)
        }
        close(fd)
        let source = try DiskSource(name: "d", path: path, server: "s")
        XCTAssertEqual(source.dataPositions(chunkSize: chunk), written)

        try fixture.repository.addServer(named: "runs", vault: "prod", disks: [("d", path)], now: Date())
        let point = try fixture.repository.prepareBackup(.manual(server: "runs", name: "r1")).run()
        XCTAssertEqual(point.status, .active, point.error ?? "")
        XCTAssertEqual(try fixture.exported(point, disk: "d"), try readBytes(path))
        XCTAssertEqual(
            try fixture.repository.catalog.pointDisks(point.id).first?.dataBytes,
            Int64((written.count - 1) * chunk + 777))
    }

    /// An image of three 64 KiB chunks and 5000 bytes, ending 904 bytes into a 4 KiB block,
    /// opened direct and buffered; skips where its folder refuses O_DIRECT.
    private func oddImage(_ scratch: Scratch) throws -> (bytes: [UInt8], direct: DiskSource, buffered: DiskSource) {
        let path = scratch.file("odd.img")
        let bytes = pseudoRandomBytes(3 * (64 << 10) + 5000, seed: 9)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        let direct = try DiskSource(name: "d", path: path, server: "s")
        try XCTSkipUnless(direct.readsDirect, "\(scratch.path) does not take O_DIRECT")
        let buffered = try DiskSource(name: "d", path: path, server: "s", direct: false)
        XCTAssertFalse(buffered.readsDirect)
        return (bytes, direct, buffered)
    }

    private func read(_ source: DiskSource, at offset: Int, _ length: Int) throws -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: (64 << 10) + DiskSource.alignment,
            alignment: DiskSource.alignment)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        let n = try source.read(into: buffer, offset: Int64(offset), length: length)
        return Array(buffer[0..<n])
    }

    func testDirectReadsGiveWhatThePageCacheGives() throws {
        let scratch = Scratch("direct")
        let (bytes, direct, buffered) = try oddImage(scratch)
        let chunk = 64 << 10
        for source in [direct, buffered] {
            var read: [UInt8] = []
            for k in 0..<4 { read += try self.read(source, at: k * chunk, min(chunk, bytes.count - k * chunk)) }
            XCTAssertEqual(read, bytes, "direct: \(source.readsDirect)")
        }
    }

    func testADirectReadPastTheEndStopsWhereTheDiskDoes() throws {
        let scratch = Scratch("direct")
        let (bytes, direct, _) = try oddImage(scratch)
        XCTAssertEqual(try read(direct, at: 3 * (64 << 10), 64 << 10), Array(bytes[(3 * (64 << 10))...]))
    }

    func testADirectReadTheDiskRefusesIsMadeThroughThePageCache() throws {
        let scratch = Scratch("direct")
        let (bytes, direct, _) = try oddImage(scratch)
        // An offset O_DIRECT cannot take: the read fails with EINVAL and is made again.
        XCTAssertEqual(try read(direct, at: 100, 5000), Array(bytes[100..<5100]))
        XCTAssertTrue(direct.readsDirect)
    }

    /// A disk on a filesystem that refuses O_DIRECT (ramfs) is read through the page cache,
    /// with read-ahead and eight workers: a full and an incremental of it come back byte for
    /// byte.
    func testADiskThatRefusesDirectReadsIsBackedUpThroughThePageCache() throws {
        try XCTSkipUnless(geteuid() == 0, "mounting a ramfs needs root")
        let scratch = Scratch("ramfs")
        let folder = scratch.file("ramfs")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try mustRun(["mount", "-t", "ramfs", "vaultfs-test", folder])
        // The scratch folder outlives the mount inside it.
        defer {
            _ = try? runCommand(["umount", folder], timeout: 30)
            withExtendedLifetime(scratch) {}
        }
        let fixture = try Fixture(diskFolder: folder)
        XCTAssertFalse(try DiskSource(name: "root", path: fixture.disk.path, server: fixture.server).readsDirect)
        let full = try fixture.backup("full")
        let v1 = try readBytes(fixture.disk.path)
        try fixture.disk.write("data/new.bin", pseudoRandomBytes(300_000, seed: 12))
        let incremental = try fixture.backup("inc", kind: .incremental, parent: full.id)
        XCTAssertEqual(try fixture.exported(full), v1)
        XCTAssertEqual(try fixture.exported(incremental), try readBytes(fixture.disk.path))
    }

    func testIncrementalRecordsOnlyChangedPositions() throws {
        let fixture = try Fixture()
        let full = try fixture.backup("full")
        let v1 = try readBytes(fixture.disk.path)
        try fixture.disk.write("data/new.bin", pseudoRandomBytes(300_000, seed: 11))
        let incremental = try fixture.backup("inc", kind: .incremental, parent: full.id)

        let fullMap = try fixture.repository.maps.read(point: full.id, disk: "root")
        let incMap = try fixture.repository.maps.read(point: incremental.id, disk: "root")
        XCTAssertEqual(fullMap.entries.count, 24 * 16)
        XCTAssertEqual(incMap.kind, .incremental)
        XCTAssertGreaterThan(incMap.entries.count, 0)
        XCTAssertLessThan(incMap.entries.count, 40)
        XCTAssertEqual(try fixture.exported(full), v1)
        XCTAssertEqual(try fixture.exported(incremental), try readBytes(fixture.disk.path))
    }

    func testDiskThatGrewOrShrankSinceItsParent() throws {
        let fixture = try Fixture()
        let path = fixture.scratch.file("raw.img")
        let chunk = 64 << 10
        XCTAssertTrue(
            FileManager.default.createFile(atPath: path, contents: Data(pseudoRandomBytes(5 * chunk + 1000, seed: 1))))
        try fixture.repository.addServer(named: "raw", vault: "prod", disks: [("d", path)], now: Date())
        func backup(_ name: String, parent: Point?) throws -> Point {
            var plan = BackupPlan.manual(server: "raw", name: name)
            if let parent {
                plan.kind = .incremental
                plan.schedule = .policy
                plan.parentId = parent.id
            }
            return try fixture.repository.prepareBackup(plan).run()
        }
        var parent = try backup("p0", parent: nil)
        var expected = [try readBytes(path)]
        var points = [parent]
        for (i, size) in [9 * chunk + 17, 2 * chunk - 3, 7 * chunk].enumerated() {
            var bytes = try readBytes(path)
            bytes = Array(bytes.prefix(size)) + pseudoRandomBytes(max(0, size - bytes.count), seed: UInt64(20 + i))
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            parent = try backup("p\(i + 1)", parent: parent)
            XCTAssertEqual(parent.status, .active, parent.error ?? "")
            points.append(parent)
            expected.append(bytes)
        }
        for (point, bytes) in zip(points, expected) {
            XCTAssertEqual(try fixture.exported(point, disk: "d"), bytes, point.name)
        }
    }

    func testDiskBackupTakesOnlyTheNamedDisks() throws {
        let fixture = try Fixture()
        let second = fixture.scratch.file("second.img")
        XCTAssertTrue(
            FileManager.default.createFile(atPath: second, contents: Data(pseudoRandomBytes(100_000, seed: 2))))
        try fixture.repository.addServer(
            named: "two", vault: "prod", disks: [("a", fixture.disk.path), ("b", second)], now: Date())
        let point = try fixture.repository.prepareBackup(.manual(server: "two", name: "only-b", disks: ["b"])).run()
        XCTAssertEqual(try fixture.repository.catalog.pointDisks(point.id).map(\.disk), ["b"])
        XCTAssertThrowsError(try fixture.repository.prepareBackup(.manual(server: "two", name: "x", disks: ["nope"])))
    }

    func testFreezeAndThawRunAroundTheRead() throws {
        let fixture = try Fixture()
        let log = fixture.scratch.file("hooks.log")
        try fixture.repository.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)],
            hooks: Hooks(freeze: "echo freeze $VAULT_SERVER >> \(log)", thaw: "echo thaw $VAULT_POINT >> \(log)"),
            host: fixture.host, now: Date())
        _ = try fixture.repository.prepareBackup(.manual(server: "db", name: "hooked"), host: fixture.host).run()
        XCTAssertEqual(try String(contentsOfFile: log, encoding: .utf8), "freeze db\nthaw hooked\n")
    }

    func testHooksLiveInHostConfigurationAndTheRepositoryOnlySaysTheyExist() throws {
        let fixture = try Fixture()
        let hooks = Hooks(freeze: "fsfreeze -f /srv", thaw: "fsfreeze -u /srv")
        try fixture.repository.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)], hooks: hooks,
            host: fixture.host, now: Date())
        XCTAssertEqual(try fixture.host.hooks(server: "db"), hooks)
        XCTAssertTrue(try fixture.repository.catalog.server(named: "db").hooks)
        let manifest = try String(
            contentsOfFile: fixture.scratch.file("repo/manifests/servers/db.json"), encoding: .utf8)
        XCTAssertFalse(manifest.contains("fsfreeze"), manifest)
        for file in ["catalog.sqlite", "catalog.sqlite-wal"] where Posix.exists(fixture.scratch.file("repo/\(file)")) {
            let bytes = try readBytes(fixture.scratch.file("repo/\(file)"))
            XCTAssertNil(String(decoding: bytes, as: UTF8.self).range(of: "fsfreeze"), file)
        }
        // A server refused (its name taken, or no disk) neither writes nor replaces hooks.
        let other = Hooks(freeze: "echo other")
        XCTAssertThrowsError(
            try fixture.repository.addServer(
                named: "db", vault: "prod", disks: [("root", fixture.disk.path)],
                hooks: other, host: fixture.host, now: Date()))
        XCTAssertThrowsError(
            try fixture.repository.addServer(
                named: "mail", vault: "prod", disks: [], hooks: other,
                host: fixture.host, now: Date()))
        XCTAssertThrowsError(
            try fixture.repository.addServer(
                named: "mail", vault: "prod", disks: [("root", fixture.disk.path)],
                hooks: Hooks(freeze: "a\nb"), host: fixture.host, now: Date()))
        XCTAssertTrue(Hooks(freeze: " \t", thaw: "").isEmpty, "blank commands are no hooks")
        XCTAssertEqual(try fixture.host.hooks(server: "db"), hooks)
        XCTAssertNil(try fixture.host.hooks(server: "mail"))
        XCTAssertThrowsError(try fixture.repository.catalog.server(named: "mail"))
    }

    func testAManifestOrCatalogThatNamesACommandOnlyMarksTheServerAsHooked() throws {
        let legacy =
            #"{"id":3,"name":"e1","vaultId":1,"freezeCommand":"id > /tmp/PWNED","thawCommand":null,"createdAt":0}"#
        let server = try JSONDecoder().decode(ServerManifest.Entry.self, from: Data(legacy.utf8))
        XCTAssertTrue(server.hooks)
        let encoded = String(decoding: try JSONEncoder().encode(server), as: UTF8.self)
        XCTAssertFalse(encoded.contains("PWNED"), encoded)
        let none = #"{"id":3,"name":"e1","freezeCommand":"","createdAt":0}"#
        XCTAssertFalse(try JSONDecoder().decode(ServerManifest.Entry.self, from: Data(none.utf8)).hooks)
    }

    func testAHookNamedInTheRepositoryButNotOnThisHostRefusesTheBackup() throws {
        let fixture = try Fixture()
        let log = fixture.scratch.file("ran.log")
        try fixture.repository.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)],
            hooks: Hooks(freeze: "echo ran >> \(log)"), host: fixture.host, now: Date())
        // Another host: db is not set up there until it is adopted, and then has no hooks.
        let elsewhere = HostServers(directory: fixture.scratch.file("other-host/servers"))
        for attempt in [
            { _ = try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: elsewhere) },
            { try fixture.repository.setHooks(Hooks(), server: "db", host: elsewhere) },
        ] {
            XCTAssertThrowsError(try attempt()) { XCTAssertTrue("\($0)".contains("not set up on this host"), "\($0)") }
        }
        XCTAssertEqual(
            try fixture.repository.adoptServer(named: "db", host: elsewhere),
            [HostServer.Disk(name: "root", path: fixture.disk.path)])
        XCTAssertThrowsError(try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: elsewhere)) {
            XCTAssertTrue("\($0)".contains("this host has none"), "\($0)")
        }
        try fixture.repository.setHooks(Hooks(), server: "db", host: elsewhere)
        XCTAssertEqual(
            try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: elsewhere).run().status,
            .active)
        XCTAssertFalse(Posix.exists(log))
    }

    /// A host reads only the disks it was given: when the repository names other paths than
    /// this host's file (someone changed it), nothing is read until the host adopts them.
    func testDisksThatDifferFromThisHostsAreNotRead() throws {
        let fixture = try Fixture()
        try fixture.repository.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)], host: fixture.host, now: Date())
        for disks in [
            [HostServer.Disk(name: "root", path: "/etc/shadow")],
            [
                HostServer.Disk(name: "root", path: fixture.disk.path),
                HostServer.Disk(name: "data", path: "/etc/shadow"),
            ],
            [HostServer.Disk(name: "data", path: fixture.disk.path)],
        ] {
            try fixture.host.write(
                HostServer(
                    disks: disks, repository: fixture.repository.config.id,
                    location: fixture.repository.location.hostName), server: "db")
            XCTAssertThrowsError(
                try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: fixture.host), "\(disks)"
            ) {
                XCTAssertEqual(($0 as? VaultError)?.code, .permissionDenied)
                XCTAssertTrue("\($0)".contains("nothing is read"), "\($0)")
            }
        }
        XCTAssertTrue(
            try fixture.repository.catalog.points(
                server: try fixture.repository.catalog.server(named: "db").id,
                includeSoftDeleted: true
            ).isEmpty)
        try fixture.repository.adoptServer(named: "db", host: fixture.host)
        XCTAssertEqual(try fixture.host.server("db")?.disks, [HostServer.Disk(name: "root", path: fixture.disk.path)])
        XCTAssertEqual(
            try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: fixture.host).run().status,
            .active)
    }

    /// A server file names the repository it is backed up into: another repository that
    /// names a server of the same name (whoever may write it could add one, with this host's
    /// paths) gets neither its disks nor its hooks, and a file that names none is adopted again.
    func testAServerFileOfAnotherRepositoryIsNotReadForThisOne() throws {
        let fixture = try Fixture()
        try fixture.repository.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)], host: fixture.host, now: Date())
        XCTAssertEqual(try fixture.host.server("db")?.repository, fixture.repository.config.id)
        let other = try Repository.create(at: fixture.scratch.file("other"), chunkSize: 64 << 10, compressionLevel: 3)
        try other.createVault(named: "prod", policy: nil, now: Date())
        // As someone who may write the other repository would: straight into its catalog.
        try other.catalog.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)], hooks: false, now: Date())
        XCTAssertThrowsError(try other.prepareBackup(.manual(server: "db", name: "x"), host: fixture.host)) {
            XCTAssertEqual(($0 as? VaultError)?.code, .permissionDenied)
            XCTAssertTrue("\($0)".contains("another repository"), "\($0)")
            // Recorded in the other repository, the refusal names nothing of this one's.
            XCTAssertFalse("\($0)".contains(fixture.repository.config.id), "\($0)")
        }
        XCTAssertTrue(try other.catalog.allPoints().isEmpty)
        // Whoever may write another repository can copy this one's id into it; the file also
        // names where this host finds its repository, so that is not enough.
        let forgedPath = fixture.scratch.file("forged")
        _ = try Repository.create(at: forgedPath, chunkSize: 64 << 10, compressionLevel: 3)
        let configURL = URL(fileURLWithPath: "\(forgedPath)/\(RepositoryConfig.fileName)")
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["id"] = fixture.repository.config.id
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let forged = try Repository(path: forgedPath)
        XCTAssertEqual(forged.config.id, fixture.repository.config.id)
        try forged.createVault(named: "prod", policy: nil, now: Date())
        try forged.catalog.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)], hooks: false, now: Date())
        XCTAssertThrowsError(try forged.prepareBackup(.manual(server: "db", name: "x"), host: fixture.host)) {
            XCTAssertEqual(($0 as? VaultError)?.code, .permissionDenied, "\($0)")
        }
        XCTAssertTrue(try forged.catalog.allPoints().isEmpty)
        try fixture.repository.setHooks(Hooks(freeze: "true"), server: "db", host: fixture.host)
        XCTAssertEqual(try fixture.repository.hostHooks("db", host: fixture.host)?.freeze, "true")
        XCTAssertNil(
            try other.hostHooks("db", host: fixture.host), "another repository's hooks are not shown as its own")
        try fixture.repository.setHooks(Hooks(), server: "db", host: fixture.host)
        // A file an older vaultctl wrote names no repository: adopted again before it is read.
        try fixture.host.write(
            HostServer(disks: [HostServer.Disk(name: "root", path: fixture.disk.path)]), server: "db")
        XCTAssertThrowsError(try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: fixture.host))
        {
            XCTAssertTrue("\($0)".contains("does not name both a repository and its location"), "\($0)")
        }
        // So is one that names the repository's id but not where it is (vaultctl 38e874e).
        try fixture.host.write(
            HostServer(
                disks: [HostServer.Disk(name: "root", path: fixture.disk.path)], hooks: Hooks(freeze: "true"),
                repository: fixture.repository.config.id),
            server: "db")
        XCTAssertThrowsError(try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: fixture.host))
        {
            XCTAssertTrue("\($0)".contains("does not name both a repository and its location"), "\($0)")
        }
        try fixture.repository.adoptServer(named: "db", host: fixture.host)
        XCTAssertEqual(try fixture.host.server("db")?.location, fixture.repository.location.hostName)
        XCTAssertEqual(try fixture.host.server("db")?.hooks.freeze, "true", "this repository's hooks stay")
        XCTAssertEqual(
            try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: fixture.host).run().status,
            .active)
    }

    func testAHooksFileOthersMayWriteIsRefused() throws {
        let fixture = try Fixture()
        let log = fixture.scratch.file("ran.log")
        try fixture.repository.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)],
            hooks: Hooks(freeze: "echo ran >> \(log)"), host: fixture.host, now: Date())
        let file = fixture.host.path(server: "db")
        // The file, its folder, the configuration folder and any folder above them.
        for (path, mode) in [
            (file, 0o620), (file, 0o602), (fixture.host.directory, 0o777), (fixture.scratch.file("etc"), 0o757),
            (fixture.scratch.path, 0o777), (fixture.scratch.path, 0o775),
        ] {
            let before = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            XCTAssertEqual(chmod(path, mode_t(mode)), 0)
            XCTAssertThrowsError(
                try fixture.repository.prepareBackup(.manual(server: "db", name: "x"), host: fixture.host),
                "\(path) \(String(mode, radix: 8))"
            ) {
                XCTAssertEqual(($0 as? VaultError)?.code, .permissionDenied, "\($0)")
            }
            XCTAssertEqual(chmod(path, mode_t(before)), 0)
        }
        // Everyone may write a folder above with its sticky bit set, as /tmp: nobody may
        // rename what root owns there.
        let before = try XCTUnwrap(
            FileManager.default.attributesOfItem(atPath: fixture.scratch.path)[.posixPermissions] as? Int)
        XCTAssertEqual(chmod(fixture.scratch.path, 0o1777), 0)
        XCTAssertEqual(try fixture.host.hooks(server: "db"), Hooks(freeze: "echo ran >> \(log)"))
        XCTAssertEqual(chmod(fixture.scratch.path, mode_t(before)), 0)
        // Reached through a link in a folder everyone may write: whoever writes it may swap
        // the link, so the hooks behind it are refused though their own folders are safe.
        let open = fixture.scratch.file("open")
        XCTAssertEqual(mkdir(open, 0o755), 0)
        XCTAssertEqual(chmod(open, 0o777), 0)
        XCTAssertEqual(symlink(fixture.scratch.path, "\(open)/link"), 0)
        XCTAssertEqual(
            try HostServers(directory: "\(fixture.scratch.path)/etc/servers").hooks(server: "db"),
            Hooks(freeze: "echo ran >> \(log)"))
        XCTAssertThrowsError(try HostServers(directory: "\(open)/link/etc/servers").hooks(server: "db")) {
            XCTAssertEqual(($0 as? VaultError)?.code, .permissionDenied, "\($0)")
        }
        XCTAssertEqual(chown(file, 65534, 65534), 0)
        XCTAssertThrowsError(try fixture.host.hooks(server: "db")) {
            XCTAssertTrue("\($0)".contains("not to root"), "\($0)")
        }
        XCTAssertEqual(chown(file, 0, 0), 0)
        XCTAssertEqual(unlink(file), 0)
        XCTAssertEqual(symlink(fixture.scratch.file("elsewhere.conf"), file), 0)
        XCTAssertThrowsError(try fixture.host.hooks(server: "db"))
        XCTAssertFalse(Posix.exists(log))
    }

    func testAServersFileIsReadAsWrittenAndRefusedWhenMalformed() throws {
        XCTAssertEqual(
            try HostServers.parse("# c\n\nfreeze =  a, b; c=d \n  thaw=x\ndisk root = /dev/vg/a b=c\n", file: "f"),
            HostServer(
                disks: [.init(name: "root", path: "/dev/vg/a b=c")], hooks: Hooks(freeze: "a, b; c=d", thaw: "x")))
        // A file saved with CR LF or CR line ends: each line is its own, no CR reaches a command.
        for text in ["freeze = a\r\nthaw = b\r\n", "freeze = a\rthaw = b", "# c\r\nfreeze = a\n\r\nthaw = b"] {
            XCTAssertEqual(try HostServers.parse(text, file: "f").hooks, Hooks(freeze: "a", thaw: "b"), text)
        }
        for text in [
            "freeze a", "frozen = a", "freeze = a\nfreeze = b", "disk root = relative", "disk r/t = /x",
            "disk root = /a\ndisk root = /b",
        ] {
            XCTAssertThrowsError(try HostServers.parse(text, file: "f"), text)
        }
        let scratch = Scratch("hooks")
        let files = HostServers(directory: scratch.file("etc/servers"))
        let disks = [HostServer.Disk(name: "root", path: "/dev/vg/s")]
        XCTAssertThrowsError(try files.write(HostServer(disks: disks, hooks: Hooks(freeze: "a\nb")), server: "s"))
        XCTAssertThrowsError(try files.write(HostServer(disks: disks), server: "../s"))
        XCTAssertThrowsError(try files.write(HostServer(disks: []), server: "s"))
        XCTAssertThrowsError(try files.write(HostServer(disks: [.init(name: "root", path: "/a\nb")]), server: "s"))
        XCTAssertThrowsError(try files.write(HostServer(disks: [.init(name: "root", path: "/a ")]), server: "s"))
        XCTAssertNil(try files.server("s"))
        try files.write(HostServer(disks: disks, hooks: Hooks(thaw: "t")), server: "s")
        XCTAssertEqual(try files.server("s"), HostServer(disks: disks, hooks: Hooks(thaw: "t")))
        XCTAssertEqual(try files.hooks(server: "s"), Hooks(thaw: "t"))
        try files.write(HostServer(disks: disks), server: "s")
        XCTAssertNil(try files.hooks(server: "s"))
        XCTAssertEqual(try files.server("s")?.disks, disks)
    }

    func testFailingFreezeCommandFailsThePointWithItsReason() throws {
        let fixture = try Fixture()
        try fixture.repository.addServer(
            named: "db", vault: "prod", disks: [("root", fixture.disk.path)],
            hooks: Hooks(freeze: "exit 3"), host: fixture.host, now: Date())
        let point = try fixture.repository.prepareBackup(.manual(server: "db", name: "frozen"), host: fixture.host)
            .run()
        XCTAssertEqual(point.status, .failed)
        XCTAssertTrue(point.error?.contains("freeze command") == true, point.error ?? "")
    }

    func testSecondBackupOfABusyServerIsRefused() throws {
        let fixture = try Fixture()
        let first = try fixture.repository.prepareBackup(.manual(server: fixture.server, name: "first"))
        XCTAssertThrowsError(try fixture.repository.prepareBackup(.manual(server: fixture.server, name: "second"))) {
            XCTAssertEqual(($0 as? VaultError)?.code, .busy)
        }
        XCTAssertEqual(first.run().status, .active)
    }

    func testFailingAPointThatAlreadyCommittedChangesNothing() throws {
        let fixture = try Fixture()
        let point = try fixture.backup("done")
        XCTAssertFalse(try fixture.repository.catalog.failPoint(point.id, error: "late", at: Date(), retrySlot: true))
        XCTAssertEqual(try fixture.repository.catalog.point(id: point.id)?.status, .active)
        XCTAssertEqual(try fixture.exported(point), try readBytes(fixture.disk.path))
    }

    func testInterruptedBackupBecomesFailedOnNextOpen() throws {
        let fixture = try Fixture()
        var job: BackupJob? = try fixture.repository.prepareBackup(.manual(server: fixture.server, name: "dies"))
        let id = job!.point.id
        job = nil
        _ = job
        let reopened = try Repository(path: fixture.repository.root)
        let point = try XCTUnwrap(reopened.catalog.point(id: id))
        XCTAssertEqual(point.status, .failed)
        XCTAssertTrue(point.error?.contains("interrupted") == true)
    }
}
