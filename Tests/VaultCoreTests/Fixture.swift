import Foundation
import TestSupport

@testable import VaultCore

/// A repository with one vault and one server whose single disk is a real ext4 image.
final class Fixture {
    let scratch = Scratch("core")
    /// This test's host configuration of hooks, never the machine's /etc/vaultfs.
    var host: HostServers { HostServers(directory: scratch.file("etc/servers")) }
    let repository: Repository
    let disk: Ext4Image
    let server = "web"

    /// `diskFolder`: where the disk image is made (the scratch folder when nil).
    init(chunkSize: Int = 64 << 10, diskSize: String = "24M", diskFolder: String? = nil) throws {
        repository = try Repository.create(at: scratch.file("repo"), chunkSize: chunkSize, compressionLevel: 3)
        disk = try Ext4Image.make(
            at: diskFolder.map { "\($0)/disk.img" } ?? scratch.file("disk.img"), size: diskSize,
            files: [
                "data/random.bin": pseudoRandomBytes(2 << 20, seed: 1),
                "data/text.txt": Array(String(repeating: "vaultfs keeps every byte\n", count: 20000).utf8),
            ])
        try repository.createVault(named: "prod", policy: nil, now: Date())
        try repository.addServer(named: server, vault: "prod", disks: [("root", disk.path)], now: Date())
    }

    /// Backs up now and returns the point, which must be active.
    @discardableResult
    func backup(_ name: String, kind: PointKind = .full, parent: String? = nil) throws -> Point {
        var plan = BackupPlan.manual(server: server, name: name)
        plan.kind = kind
        plan.parentId = parent
        if kind == .incremental { plan.schedule = .policy }
        let point = try repository.prepareBackup(plan).run()
        guard point.status == .active else { throw TestError.failed("backup \(name) failed: \(point.error ?? "")") }
        return point
    }

    func exported(_ point: Point, disk: String = "root") throws -> [UInt8] {
        let out = scratch.file("export-\(point.id)")
        defer { unlink(out) }
        let target = try ExportTarget.open(out)
        _ = try repository.export(point: point, disk: disk, to: target)
        try target.commit()
        return try readBytes(out)
    }

    var chunkCount: Int { (try! repository.chunks.allChunks()).count }
}
