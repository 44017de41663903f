import Foundation
import Glibc
import TestSupport
import XCTest

@testable import VaultCore
@testable import VaultFS
@testable import VaultFiles

/// The mount's logic in process, without a kernel mount: the tree a catalog gives, and the
/// replies `FileSystem` gives to lookups, listings, attributes and reads of files inside
/// points (a real ext4 disk backed up into a real repository).
final class FileSystemTests: XCTestCase {
    private final class Setup {
        let scratch = Scratch("fs")
        let repository: Repository
        let tree: SourceTree
        let point: Point

        init() throws {
            tree = try SourceTree.make(at: scratch.file("src"))
            try tree.ext4(at: scratch.file("root.img"), size: "32M")
            repository = try Repository.create(at: scratch.file("repo"), chunkSize: 64 << 10, compressionLevel: 3)
            try repository.createVault(named: "prod", policy: nil, now: Date())
            try repository.addServer(
                named: "web", vault: "prod", disks: [("root", scratch.file("root.img"))], now: Date())
            point = try repository.prepareBackup(.manual(server: "web", name: "one")).run()
        }

        func fileSystem(_ options: String = "") throws -> FileSystem {
            FileSystem(repository: repository, options: try MountOptions(parsing: options))
        }
    }

    /// Follows names from the root, as the kernel's lookups would.
    private func lookup(_ fs: FileSystem, _ path: String) throws -> Attributes {
        var inode = InodeTable.rootInode
        var last: Attributes?
        for name in path.split(separator: "/") {
            guard case .entry(let attributes, _) = fs.lookup(parent: inode, name: FileName(String(name))) else {
                throw TestError.failed(
                    "lookup of \(name) in \(path) failed: \(fs.lookup(parent: inode, name: FileName(String(name))))")
            }
            inode = attributes.inode
            last = attributes
        }
        return try XCTUnwrap(last)
    }

    private func names(_ fs: FileSystem, _ inode: UInt64) throws -> [String] {
        guard case .opened(let handle, _, _, _) = fs.opendir(inode) else { throw TestError.failed("opendir failed") }
        defer { _ = fs.release(handle: handle) }
        guard case .directory(let entries, _, _) = fs.readdir(handle: handle, offset: 0, size: 1 << 16) else {
            throw TestError.failed("readdir failed")
        }
        return entries.map(\.name.description)
    }

    func testTheFramesBudgetIsWhatCacheSizeLeavesBeyondTheDaemonsOwnMemory() {
        let mib = 1 << 20
        // 40 MiB resident at start: 24 beyond the 16 allowed come out of the frames' budget.
        XCTAssertEqual(FileSystem.frameBudget(cacheSize: 128 * mib, resident: 40 * mib), 104 * mib)
        XCTAssertEqual(FileSystem.frameBudget(cacheSize: 128 * mib, resident: 10 * mib), 128 * mib)
        // Never below half of cache_size, and all of it when the process cannot be measured.
        XCTAssertEqual(FileSystem.frameBudget(cacheSize: 32 * mib, resident: 200 * mib), 16 * mib)
        XCTAssertEqual(FileSystem.frameBudget(cacheSize: 32 * mib, resident: nil), 32 * mib)
    }

    func testResidentMemoryIsReadFromProc() throws {
        let resident = try XCTUnwrap(System.residentBytes())
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        XCTAssertGreaterThan(resident, 1 << 20)
        XCTAssertLessThanOrEqual(resident, usage.ru_maxrss * 1024 + (1 << 20), "no more than the peak so far")
    }

    func testTreeShowsFilesOnlyForActivePoints() throws {
        let setup = try Setup()
        let inventory = try setup.repository.catalog.inventory()
        let tree = Tree(inventory, singleVault: nil)
        let names = (tree.entries[.point(setup.point.id)] ?? []).map(\.name)
        XCTAssertEqual(names, ["point.json", "files", "root.img"])
        var failed = inventory
        failed.points = failed.points.map {
            var p = $0
            p.status = .failed
            return p
        }
        XCTAssertEqual(
            (Tree(failed, singleVault: nil).entries[.point(setup.point.id)] ?? []).map(\.name), ["point.json"])
        XCTAssertFalse(Tree(failed, singleVault: nil).contains(.files(point: setup.point.id)))
    }

    /// `ls -l` of a big server takes longer than the refresh interval: the tree must not be
    /// read again while the catalog stays the same, and must be once another process changes it.
    func testTreeIsReadAgainOnlyWhenTheCatalogChanged() throws {
        let setup = try Setup()
        let fs = try setup.fileSystem()
        _ = try lookup(fs, "prod/web/one")
        XCTAssertEqual(fs.trees.reads.load(ordering: .relaxed), 1)
        Thread.sleep(forTimeInterval: TreeCache.refreshInterval + 0.2)
        _ = try lookup(fs, "prod/web/one")
        XCTAssertEqual(fs.trees.reads.load(ordering: .relaxed), 1, "an unchanged catalog was read again")

        let other = try Repository(path: setup.scratch.file("repo"))
        _ = try other.prepareBackup(.manual(server: "web", name: "two")).run()
        Thread.sleep(forTimeInterval: TreeCache.refreshInterval + 0.2)
        _ = try lookup(fs, "prod/web/two")
        XCTAssertEqual(fs.trees.reads.load(ordering: .relaxed), 2)
    }

    /// A point still being made is looked at again every refresh even though nothing commits:
    /// its process may have died, and the re-read is what recovers it.
    func testTreeWithAPointBeingMadeIsReadAgainUntilItEnds() throws {
        let setup = try Setup()
        let fs = try setup.fileSystem()
        let serverId = try XCTUnwrap(setup.point.serverId)
        // The backup's process is alive while its server lock is held.
        var lock: StoreLock? = try setup.repository.lockServer(serverId, name: "web")
        XCTAssertNotNil(lock, "the server lock is taken")
        var making = setup.point
        making.id = "5e1f"
        making.name = "being-made"
        making.status = .creating
        making.finishedAt = nil
        try setup.repository.catalog.insertPoint(making, tags: [])
        _ = try lookup(fs, "prod/web/being-made")
        let first = fs.trees.reads.load(ordering: .relaxed)
        Thread.sleep(forTimeInterval: TreeCache.refreshInterval + 0.2)
        _ = try lookup(fs, "prod/web/being-made")
        XCTAssertEqual(
            fs.trees.reads.load(ordering: .relaxed), first + 1, "a tree with a point being made was not read again")
        XCTAssertEqual(try setup.repository.catalog.point(id: "5e1f")?.status, .creating, "a live backup was recovered")

        // Its process ends without a word: the next look recovers the point as failed.
        lock = nil
        XCTAssertNil(lock)
        Thread.sleep(forTimeInterval: TreeCache.refreshInterval + 0.2)
        _ = fs.tree()
        XCTAssertEqual(try setup.repository.catalog.point(id: "5e1f")?.status, .failed)
    }

    func testLookupsReachFilesWithTheirOriginalOwnersAndModes() throws {
        let setup = try Setup()
        let fs = try setup.fileSystem()
        XCTAssertEqual(try names(fs, try lookup(fs, "prod/web/one/files").inode), [".", "..", "root"])
        let shadow = try lookup(fs, "prod/web/one/files/root/etc/shadow")
        XCTAssertEqual(shadow.kind, .file)
        XCTAssertEqual(shadow.mode, 0o600)
        XCTAssertEqual(shadow.owner?.uid, 0)
        let key = try lookup(fs, "prod/web/one/files/root/home/user/private.key")
        XCTAssertEqual(key.owner?.uid, 4242)
        XCTAssertEqual(key.owner?.gid, 4242)
        // files_owner=me: no owner of its own, so the bridge shows the mounting user's.
        let mine = try setup.fileSystem("files_owner=me")
        XCTAssertNil(try lookup(mine, "prod/web/one/files/root/etc/shadow").owner)
        // A name that is not there is ENOENT, and so is a made-up inode number.
        let etc = try lookup(fs, "prod/web/one/files/root/etc")
        guard fs.lookup(parent: etc.inode, name: "nope").errno == ENOENT else {
            return XCTFail("lookup of a missing name")
        }
        guard fs.getattr(InodeTable.insideBit | 77 << 40 | 2).errno == ENOENT else {
            return XCTFail("unknown volume")
        }
    }

    func testReadsSeeksLinksAndXattrsOfFilesInside() throws {
        let setup = try Setup()
        let fs = try setup.fileSystem()
        let large = try lookup(fs, "prod/web/one/files/root/var/lib/data/large.bin")
        guard case .opened(let handle, true, false, _) = fs.open(large.inode, flags: O_RDONLY) else {
            return XCTFail("open")
        }
        guard case .data(let bytes) = fs.read(handle: handle, offset: 1000, size: 70_000) else {
            return XCTFail("read")
        }
        XCTAssertEqual(bytes, Array(try readBytes(setup.tree.path + "/var/lib/data/large.bin")[1000..<71_000]))
        guard case .data(let tail) = fs.read(handle: handle, offset: large.size - 10, size: 4096) else {
            return XCTFail("read")
        }
        XCTAssertEqual(tail.count, 10)
        _ = fs.release(handle: handle)

        let sparse = try lookup(fs, "prod/web/one/files/root/var/lib/data/sparse.img")
        guard case .opened(let s, _, _, _) = fs.open(sparse.inode, flags: O_RDONLY) else {
            return XCTFail("open sparse")
        }
        guard case .offset(4096) = fs.lseek(handle: s, offset: 0, whence: 4) else { return XCTFail("SEEK_HOLE") }
        guard case .offset(6_144_000) = fs.lseek(handle: s, offset: 4096, whence: 3) else {
            return XCTFail("SEEK_DATA")
        }
        _ = fs.release(handle: s)

        guard fs.open(large.inode, flags: O_RDWR).errno == EROFS else {
            return XCTFail("write open must be EROFS")
        }
        let fifo = try lookup(fs, "prod/web/one/files/root/srv/fifo")
        XCTAssertEqual(fifo.kind, .fifo)
        guard fs.open(fifo.inode, flags: O_RDONLY).errno == EACCES else {
            return XCTFail("a FIFO is never opened")
        }
        let null = try lookup(fs, "prod/web/one/files/root/srv/null")
        XCTAssertEqual(null.kind, .characterDevice)
        XCTAssertEqual(null.device?.major, 1)
        XCTAssertEqual(null.device?.minor, 3)

        let link = try lookup(fs, "prod/web/one/files/root/etc/nginx/current")
        guard case .link("nginx.conf") = fs.readlink(link.inode) else { return XCTFail("readlink") }

        let hostname = try lookup(fs, "prod/web/one/files/root/etc/hostname")
        guard case .xattrSize(let size) = fs.getxattr(hostname.inode, name: "user.origin", size: 0) else {
            return XCTFail("size")
        }
        XCTAssertEqual(size, "web01 backup test".utf8.count)
        guard case .data(let value) = fs.getxattr(hostname.inode, name: "user.origin", size: 64) else {
            return XCTFail("value")
        }
        XCTAssertEqual(value, Array("web01 backup test".utf8))
        guard fs.getxattr(hostname.inode, name: "user.origin", size: 3).errno == ERANGE else {
            return XCTFail("ERANGE")
        }
        guard fs.getxattr(hostname.inode, name: "user.none", size: 64).errno == ENODATA else {
            return XCTFail("ENODATA")
        }
        guard case .data(let list) = fs.listxattr(hostname.inode, size: 256) else { return XCTFail("listxattr") }
        XCTAssertEqual(list, Array("user.origin".utf8) + [0])
        // The tree's own nodes cannot hold any: not supported, so that ls stops asking.
        guard fs.getxattr(InodeTable.rootInode, name: "user.origin", size: 64).errno == ENOTSUP else {
            return XCTFail("root")
        }
        let point = try lookup(fs, "prod/web/one")
        guard fs.getxattr(point.inode, name: "system.posix_acl_access", size: 0).errno == ENOTSUP else {
            return XCTFail("point")
        }
        guard case .data([]) = fs.listxattr(point.inode, size: 64) else { return XCTFail("listxattr of a point") }
    }

    func testReaddirplusGivesAttributesAndHardLinksShareAnInode() throws {
        let setup = try Setup()
        let fs = try setup.fileSystem()
        let data = try lookup(fs, "prod/web/one/files/root/var/lib/data")
        guard case .opened(let handle, true, false, true) = fs.opendir(data.inode) else {
            return XCTFail("immutable folders are cached")
        }
        guard
            case .directoryPlus(let entries, _, _, let attributesOf) = fs.readdirplus(
                handle: handle, offset: 0, size: 1 << 16)
        else {
            return XCTFail("readdirplus")
        }
        var byName: [String: Attributes] = [:]
        for entry in entries where entry.name != "." && entry.name != ".." {
            byName[entry.name.description] = try XCTUnwrap(attributesOf(entry)?.0, entry.name.description)
        }
        XCTAssertEqual(Set(byName.keys), ["large.bin", "large.hardlink", "sparse.img", "long-link"])
        XCTAssertEqual(byName["large.bin"]?.inode, byName["large.hardlink"]?.inode)
        XCTAssertEqual(byName["large.bin"]?.links, 2)
        XCTAssertEqual(byName["long-link"]?.kind, .symlink)
        _ = fs.release(handle: handle)
        // Nothing under files/ can be removed or made.
        guard fs.mkdir(parent: data.inode, name: "x").errno == EPERM else { return XCTFail("mkdir inside") }
        guard fs.rmdir(parent: data.inode, name: "large.bin").errno == EROFS else {
            return XCTFail("rmdir inside")
        }
    }

    /// An image read is answered with the cache's own frames and runs of zeros, and together
    /// they are exactly the disk's bytes: across frame and chunk ends, through a zero chunk
    /// and at the end of the image. Damage gives EIO, not a short or wrong reply.
    func testImageReadsAreTheDisksBytesAsPieces() throws {
        let setup = try Setup()
        let fs = try setup.fileSystem()
        let image = try lookup(fs, "prod/web/one/root.img")
        let disk = try readBytes(setup.scratch.file("root.img"))
        guard case .opened(let handle, _, _, _) = fs.open(image.inode, flags: O_RDONLY) else { return XCTFail("open") }
        var sawZeros = false
        for (offset, size) in [
            (0, 4096), (65_000, 200_000), (1 << 20, 1 << 20), (disk.count - 100, 4096), (disk.count, 4096),
        ] {
            let reply = fs.read(handle: handle, offset: Int64(offset), size: size)
            var bytes: [UInt8] = []
            switch reply {
            case .pieces(let pieces):
                for piece in pieces {
                    switch piece {
                    case .zeros(let count):
                        bytes += [UInt8](repeating: 0, count: count)
                        sawZeros = true
                    case .bytes(let frame, let range): bytes += frame[range]
                    }
                }
            case .data(let data): bytes = data
            default: return XCTFail("read at \(offset): \(reply)")
            }
            XCTAssertEqual(
                bytes, Array(disk[min(offset, disk.count)..<min(disk.count, offset + size)]), "read at \(offset)")
        }
        XCTAssertTrue(sawZeros, "the 32M ext4 image has zero chunks")
        _ = fs.release(handle: handle)

        // A flipped bit in a chunk: the read of its range is EIO.
        let flat = try setup.repository.openImage(point: setup.point.id, disk: "root").image
        guard
            let (position, hash) = flat.refs.enumerated().lazy.compactMap({ i, ref -> (Int, ChunkHash)? in
                if case .data(let hash) = ref { return (i, hash) } else { return nil }
            }).first
        else { return XCTFail("no data chunk") }
        let file = setup.repository.chunks.location(of: hash)
        chmod(file, 0o644)
        var stored = try readBytes(file)
        stored[stored.count - 10] ^= 0x40
        try Data(stored).write(to: URL(fileURLWithPath: file))
        let fresh = try setup.fileSystem()
        let again = try lookup(fresh, "prod/web/one/root.img")
        guard case .opened(let damaged, _, _, _) = fresh.open(again.inode, flags: O_RDONLY) else {
            return XCTFail("open again")
        }
        guard fresh.read(handle: damaged, offset: Int64(position * (64 << 10)), size: 4096).errno == EIO else {
            return XCTFail("a damaged chunk reads as EIO")
        }
        _ = fresh.release(handle: damaged)
    }

    /// The mounts at a folder, from mountinfo's text: the kernel's escapes undone (a mount
    /// point with a space is still found, so a second mount there is refused), stacked
    /// mounts oldest first, and other folders left out.
    /// `.restores/<id>/root.img`: the one file that opens for writing; writes read back, land
    /// in the target, and stay across a restart of the file system.
    func testAnInstantRestoreImageTakesWritesThatOutliveARestart() throws {
        let setup = try Setup()
        let folder = setup.scratch.file("restores")
        setenv("VAULT_RESTORE_DIR", folder, 1)
        defer { unsetenv("VAULT_RESTORE_DIR") }
        let restores = InstantRestores(directory: folder)
        let target = setup.scratch.file("target.raw")
        let record = try setup.repository.startInstantRestore(
            point: setup.point, disk: "root", to: target, restores: restores)
        let written = pseudoRandomBytes(100_000, seed: 7)
        do {
            let fs = try setup.fileSystem()
            defer { fs.shutdown() }
            fs.liveRestores.refresh()
            XCTAssertTrue(try names(fs, InodeTable.rootInode).contains(".restores"))
            let attributes = try lookup(fs, ".restores/\(record.id)/root.img")
            XCTAssertEqual(attributes.mode, 0o600)
            XCTAssertEqual(attributes.size, record.size)
            guard case .opened(let handle, _, let directIO, _) = fs.open(attributes.inode, flags: O_RDWR) else {
                return XCTFail("the image does not open for writing")
            }
            XCTAssertTrue(directIO, "the kernel neither caches nor reads ahead the image")
            let reply = written.withUnsafeBytes { fs.write(handle: handle, offset: 70_000, bytes: $0) }
            guard case .written(let count) = reply else { return XCTFail("\(reply)") }
            XCTAssertEqual(count, written.count)
            guard case .data(let back) = fs.read(handle: handle, offset: 70_000, size: written.count) else {
                return XCTFail("no read")
            }
            XCTAssertEqual(back, written)
            let past = [UInt8](repeating: 1, count: 10).withUnsafeBytes {
                fs.write(handle: handle, offset: record.size - 5, bytes: $0)
            }
            XCTAssertEqual(past.errno, ENOSPC, "a disk does not grow")
            XCTAssertEqual(fs.setattr(attributes.inode, newSize: record.size + 1).errno, EPERM)
            guard case .attributes = fs.setattr(attributes.inode, newSize: nil) else { return XCTFail("setattr") }
            XCTAssertEqual(fs.fallocate(handle: handle).errno, EOPNOTSUPP)
            guard case .offset(record.size) = fs.lseek(handle: handle, offset: 0, whence: 4) else {
                return XCTFail("SEEK_HOLE is the end")
            }
            XCTAssertTrue(restores.isImageOpen(record.id))
            _ = fs.release(handle: handle)
            XCTAssertFalse(restores.isImageOpen(record.id))
            // The point's own image stays read-only.
            let pointImage = try lookup(fs, "prod/web/one/root.img")
            XCTAssertEqual(fs.open(pointImage.inode, flags: O_RDWR).errno, EROFS)
        }
        let again = try setup.fileSystem()
        again.liveRestores.refresh()
        let attributes = try lookup(again, ".restores/\(record.id)/root.img")
        guard case .opened(let handle, _, _, _) = again.open(attributes.inode, flags: O_RDONLY),
            case .data(let back) = again.read(handle: handle, offset: 70_000, size: written.count)
        else { return XCTFail("the image does not read after a restart") }
        XCTAssertEqual(back, written)
        _ = again.release(handle: handle)
        again.shutdown()
        try restores.end(record, cancel: true, repository: setup.repository)
        XCTAssertFalse(FileManager.default.fileExists(atPath: restores.folder(record.id)))
    }

    func testMountinfoLinesOfAFolderAreFoundWithTheirEscapesUndone() {
        let text = """
            22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
            40 22 0:45 / /mnt/my\\040backups rw,nosuid shared:20 - fuse.vaultfs /srv/repo\\040one rw,user_id=0
            41 40 0:46 / /mnt/my\\040backups rw,nosuid shared:21 - fuse.vaultfs /srv/other rw,user_id=0
            42 22 0:47 / /mnt/my rw,nosuid shared:22 - fuse.vaultfs /srv/third rw,user_id=0
            """
        let at = { (target: String) in MountTable.entries(in: text).filter { $0.target == target } }
        XCTAssertEqual(
            at("/mnt/my backups"),
            [
                MountTable.Entry(
                    device: "0:45", target: "/mnt/my backups", source: "/srv/repo one", type: "fuse.vaultfs"),
                MountTable.Entry(device: "0:46", target: "/mnt/my backups", source: "/srv/other", type: "fuse.vaultfs"),
            ])
        XCTAssertEqual(at("/mnt/my").map(\.source), ["/srv/third"])
        XCTAssertEqual(at("/mnt"), [])
        XCTAssertEqual(MountTable.unescaped("a\\134b\\011c\\012"), "a\\b\tc\n")
        XCTAssertEqual(MountTable.unescaped("not\\9an\\escape\\"), "not\\9an\\escape\\")
        XCTAssertEqual(MountTable.unescaped("\\+17\\777\\04"), "\\+17\\777\\04")
    }

    /// A value in libfuse's option string is one value whatever it holds, and `nosuid,nodev`
    /// come after everything else.
    func testOptionValuesAreEscapedAndNosuidNodevComeLast() throws {
        XCTAssertEqual(Mount.escapedOptionValue("/srv/r,suid,dev"), "/srv/r\\,suid\\,dev")
        XCTAssertEqual(Mount.escapedOptionValue("x\\"), "x\\\\")
        XCTAssertEqual(Mount.escapedOptionValue("a=b c\nd"), "a=b c\nd")
        // A comma that Swift folds into one Character with a mark before or after it is still
        // a comma byte to libfuse.
        for (value, expected) in [
            ("r,\u{301}suid", "r\\,\u{301}suid"), ("r\u{600},dev", "r\u{600}\\,dev"),
            ("r\\\u{301},allow_other", "r\\\\\u{301}\\,allow_other"),
        ] {
            XCTAssertEqual(Array(Mount.escapedOptionValue(value).utf8), Array(expected.utf8), value)
        }
        var options = try MountOptions(parsing: "allow_other,ro,suid,dev")
        options.fsname = nil
        let text = Mount.optionString(fsname: "/srv/r,allow_other\\", options: options)
        XCTAssertTrue(text.hasPrefix("fsname=/srv/r\\,allow_other\\\\,subtype=vaultfs,"), text)
        XCTAssertTrue(text.hasSuffix(",allow_other,ro,nosuid,nodev"), text)
        XCTAssertFalse(text.contains(",suid") || text.contains(",dev"), text)
    }

    /// The repository, a folder inside it and one above it are refused as mount points,
    /// through symbolic links too; a folder beside it is not.
    func testAMountPointInOrAroundTheRepositoryIsRefused() throws {
        let scratch = Scratch("overlap")
        let repository = scratch.file("srv/repo")
        try FileManager.default.createDirectory(atPath: "\(repository)/maps", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: scratch.file("mnt"), withIntermediateDirectories: true)
        XCTAssertEqual(symlink(repository, scratch.file("link")), 0)
        let folders = [(what: "the repository", path: repository)]
        for refused in [repository, "\(repository)/maps", scratch.file("srv"), scratch.path, scratch.file("link"), "/"]
        {
            XCTAssertThrowsError(try Mount.refuseOverlap(refused, with: folders), refused)
        }
        XCTAssertNoThrow(try Mount.refuseOverlap(scratch.file("mnt"), with: folders))
        XCTAssertNoThrow(try Mount.refuseOverlap(scratch.file("srv/repo2"), with: folders))
        // Names compare as bytes: a folder inside whose name starts with a combining mark is
        // inside; "café" spelt with U+00E9 and with "e" + U+0301 are two folders.
        XCTAssertThrowsError(try Mount.refuseOverlap("\(repository)/\u{301}x", with: folders))
        let composed = scratch.file("caf\u{e9}")
        let decomposed = scratch.file("cafe\u{301}")
        for folder in [composed, decomposed] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        XCTAssertThrowsError(try Mount.refuseOverlap(composed, with: [(what: "the repository", path: composed)]))
        XCTAssertNoThrow(try Mount.refuseOverlap(decomposed, with: [(what: "the repository", path: composed)]))
    }

    func testACacheLargerThanMemoryOrTooLargeToCountIsRefused() {
        XCTAssertThrowsError(try MountOptions(parsing: "cache_size=999T"))
        XCTAssertThrowsError(try MountOptions(parsing: "cache_size=99999999999999T"))
        XCTAssertEqual(try MountOptions(parsing: "cache_size=64M").cacheSize, 64 << 20)
    }

    /// Listings of the files inside points count against `cache_size`: an open folder's
    /// entries while it is open, each volume's kept listings while they are kept.
    func testListingsCountAgainstTheMemoryBudget() throws {
        let setup = try Setup()
        let fs = try setup.fileSystem()
        let data = try lookup(fs, "prod/web/one/files/root/var/lib/data")
        let kept = fs.cache.chargedBytes
        XCTAssertGreaterThan(kept, 0, "the listings a lookup made are not counted")
        guard case .opened(let first, _, _, _) = fs.opendir(data.inode) else { return XCTFail("opendir") }
        let open = fs.cache.chargedBytes
        XCTAssertGreaterThan(open, kept)
        XCTAssertLessThanOrEqual(fs.cache.cachedBytes + fs.cache.chargedBytes, fs.cache.budget)
        _ = fs.release(handle: first)
        let closed = fs.cache.chargedBytes
        XCTAssertLessThan(closed, open, "a closed folder's entries are still counted")
        // Listed again from the kept listing: the open folder alone is counted anew.
        guard case .opened(let second, _, _, _) = fs.opendir(data.inode) else { return XCTFail("opendir") }
        XCTAssertEqual(fs.cache.chargedBytes, open)
        _ = fs.release(handle: second)
        XCTAssertEqual(fs.cache.chargedBytes, closed)
    }

    /// A volume's kept listings stay within their budget: the older half goes when a new one
    /// takes it past, and what is given back is what was counted.
    func testKeptListingsStayWithinTheirBudget() {
        var cache = DirectoryCache()
        func listing(_ count: Int) -> DirectoryCache.Listing {
            let entries = (0..<count).map { FileEntry(name: FileName("f\($0)"), inode: UInt64($0 + 12), kind: .file) }
            return DirectoryCache.Listing(listing: DirectoryListing(entries: entries, unusable: []), byName: [:])
        }
        let one = listing(100).bytes
        var total = 0
        for directory in 0..<40 {
            total += cache.insert(listing(100), for: UInt64(directory), budget: 10 * one)
            XCTAssertLessThanOrEqual(cache.bytes, 10 * one)
            XCTAssertEqual(cache.bytes, total)
        }
        XCTAssertNotNil(cache.listing(39))
        XCTAssertNil(cache.listing(0))
    }
}
