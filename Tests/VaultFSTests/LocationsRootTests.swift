import Foundation
import Glibc
import TestSupport
import XCTest

@testable import VaultCore
@testable import VaultFS
@testable import VaultFiles

/// The root of a mount of every location, in process: a folder per location, each answering
/// as a mount of it alone, with its inode and handle numbers tagged so two repositories'
/// numbers never meet, and a copy's point.json saying what it is a copy of.
final class LocationsRootTests: XCTestCase {
    private let scratch = Scratch("locations-root")

    /// A repository with vault `vault`, server web and one point of a 1 MiB disk.
    private func repository(_ name: String, vault: String, seed: UInt64) throws -> Repository {
        let disk = scratch.file("\(name).img")
        XCTAssertTrue(
            FileManager.default.createFile(atPath: disk, contents: Data(pseudoRandomBytes(1 << 20, seed: seed))))
        let repository = try Repository.create(at: scratch.file(name), chunkSize: 64 << 10, compressionLevel: 1)
        try repository.createVault(named: vault, policy: nil, now: Date())
        try repository.addServer(named: "web", vault: vault, disks: [("root", disk)], now: Date())
        _ = try repository.prepareBackup(.manual(server: "web", name: "one")).run()
        return repository
    }

    private func entry(_ ops: any MountOperations, _ parent: UInt64, _ name: String) throws -> Attributes {
        guard case .entry(let attributes, _) = ops.lookup(parent: parent, name: FileName(name)) else {
            throw TestError.failed("no \(name) under \(parent)")
        }
        return attributes
    }

    private func path(_ ops: any MountOperations, _ path: String) throws -> Attributes {
        var attributes = Attributes(
            inode: InodeTable.rootInode, kind: .directory, mode: 0, size: 0, blocks: 0, time: Date())
        for name in path.split(separator: "/") { attributes = try entry(ops, attributes.inode, String(name)) }
        return attributes
    }

    private func names(_ ops: any MountOperations, _ inode: UInt64) throws -> [String: UInt64] {
        guard case .opened(let handle, _, _, _) = ops.opendir(inode) else { throw TestError.failed("opendir") }
        defer { _ = ops.release(handle: handle) }
        guard case .directory(let entries, _, _) = ops.readdir(handle: handle, offset: 0, size: 1 << 16) else {
            throw TestError.failed("readdir")
        }
        return Dictionary(entries.map { ($0.name.description, $0.inode) }) { a, _ in a }
    }

    private func read(_ ops: any MountOperations, _ inode: UInt64) throws -> [UInt8] {
        guard case .opened(let handle, _, _, _) = ops.open(inode, flags: O_RDONLY) else {
            throw TestError.failed("open")
        }
        defer { _ = ops.release(handle: handle) }
        var bytes: [UInt8] = []
        while true {
            switch ops.read(handle: handle, offset: Int64(bytes.count), size: 256 << 10) {
            case .data(let chunk):
                if chunk.isEmpty { return bytes }
                bytes += chunk
            case .pieces(let pieces):
                let chunk = pieces.flatMap { piece -> [UInt8] in
                    switch piece {
                    case .bytes(let frame, let range): return Array(frame[range])
                    case .zeros(let count): return [UInt8](repeating: 0, count: count)
                    }
                }
                if chunk.isEmpty { return bytes }
                bytes += chunk
            default: throw TestError.failed("read")
            }
        }
    }

    /// `df` of a mount of every location counts each location's filesystem once: two folders
    /// of one disk once, a location on another disk besides.
    func testStatfsCountsEachLocationsFilesystemOnce() throws {
        let options = try MountOptions(parsing: "")
        let fast = FileSystem(repository: try repository("fast", vault: "prod", seed: 1), options: options)
        let near = FileSystem(repository: try repository("near", vault: "prod", seed: 2), options: options)
        let small = scratch.file("small")
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        try mustRun(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", small])
        defer { _ = try? runCommand(["umount", "-l", small], timeout: 10) }
        let away = FileSystem(repository: try repository("small/away", vault: "prod", seed: 3), options: options)
        func blocks(_ ops: any MountOperations) -> UInt64 {
            guard case .statfs(let blocks, _, _) = ops.statfs() else { return 0 }
            return blocks
        }
        XCTAssertEqual(blocks(away), 16 << 8, "16 MiB in 4 KiB blocks")
        XCTAssertEqual(blocks(try LocationsRoot([("fast", fast), ("near", near)])), blocks(fast))
        XCTAssertEqual(
            blocks(try LocationsRoot([("fast", fast), ("near", near), ("away", away)])), blocks(fast) + blocks(away))
    }

    func testEachLocationIsAFolderAnsweringAsItsOwnMountWithNumbersThatNeverMeet() throws {
        let fast = try repository("fast", vault: "prod", seed: 1)
        let offsite = try repository("offsite", vault: "archive", seed: 2)
        let options = try MountOptions(parsing: "")
        let root = try LocationsRoot([
            ("fast", FileSystem(repository: fast, options: options)),
            ("offsite", FileSystem(repository: offsite, options: options, copyOf: "fast")),
        ])
        XCTAssertEqual(Set(try names(root, InodeTable.rootInode).keys), [".", "..", "fast", "offsite"])
        let a = try path(root, "fast/prod/web/one/root.img")
        let b = try path(root, "offsite/archive/web/one/root.img")
        // The same node in two repositories has the same local number and two mount numbers.
        XCTAssertNotEqual(a.inode, b.inode)
        XCTAssertEqual(a.inode & ~LocationsRoot.mask, b.inode & ~LocationsRoot.mask)
        XCTAssertEqual(try read(root, a.inode), pseudoRandomBytes(1 << 20, seed: 1))
        XCTAssertEqual(try read(root, b.inode), pseudoRandomBytes(1 << 20, seed: 2))
        guard case .attributes(let again, _) = root.getattr(b.inode) else { return XCTFail("getattr") }
        XCTAssertEqual(again.size, 1 << 20)
        // A copy's point.json says so; the other location's does not.
        let copy =
            try JSONSerialization.jsonObject(
                with: Data(try read(root, try path(root, "offsite/archive/web/one/point.json").inode)))
            as? [String: Any]
        XCTAssertEqual((copy?["copyOf"] as? [String: Any])?["location"] as? String, "fast")
        let own =
            try JSONSerialization.jsonObject(
                with: Data(try read(root, try path(root, "fast/prod/web/one/point.json").inode))) as? [String: Any]
        XCTAssertNil(own?["copyOf"])
        // Nothing is made or deleted in a mirror: only a copy writes there.
        let mirrorServer = try path(root, "offsite/archive/web")
        guard case .refused(.readOnly) = root.mkdir(parent: mirrorServer.inode, name: "now") else {
            return XCTFail("mkdir in a mirror")
        }
        guard case .refused(.readOnly) = root.rmdir(parent: mirrorServer.inode, name: "one") else {
            return XCTFail("rmdir in a mirror")
        }
        XCTAssertNoThrow(try path(root, "offsite/archive/web/one/point.json"))
        // Names the root does not have, numbers no location has, and changes at the root are refused.
        guard case .refused(.notFound) = root.lookup(parent: InodeTable.rootInode, name: "nope") else {
            return XCTFail("lookup of nope")
        }
        guard case .refused = root.getattr(7 << LocationsRoot.shift | 1) else {
            return XCTFail("getattr of location 7")
        }
        guard case .refused = root.mkdir(parent: InodeTable.rootInode, name: "x") else { return XCTFail("mkdir") }
        XCTAssertThrowsError(
            try LocationsRoot(
                (0...LocationsRoot.most).map { ("l\($0)", FileSystem(repository: fast, options: options)) }))
    }

    func testAllLocationsRefusesTheOptionsOfOneRepository() throws {
        XCTAssertTrue(try MountOptions(parsing: "all_locations,allow_other,cache_size=64M").allLocations)
        for option in ["vault=prod", "state_dir=/tmp/s", "cache_dir=/tmp/c", "s3_endpoint=http://h:1", "s3_region=eu"] {
            XCTAssertThrowsError(try MountOptions(parsing: "all_locations,\(option)"), option) { error in
                XCTAssertTrue("\(error)".contains("all_locations takes each location's settings"), "\(error)")
            }
        }
    }
}
