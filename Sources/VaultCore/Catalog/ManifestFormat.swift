import Foundation

// What the repository's manifests hold, apart from the catalog's rows and the core's values:
// the files are the repository's format, read by other hosts and other versions. Format 1
// keeps the fields of the first release. Point manifests still carry the writing catalog's
// ids; vault and server manifests no longer do (a disk's `serverId` is 0), which every reader
// of format 1 accepts: ids mean nothing outside the catalog that wrote them, and readers link
// records again by name.

/// Everything the catalog knows of one point, kept in the repository so that the repository
/// alone is enough to restore: `manifests/points/<id>.json`.
struct PointManifest: Sendable, Equatable {
    static let format = 1
    var point: Point
    var tags: [PointTag]
    var disks: [PointDisk]

    init(_ point: Point, tags: [PointTag], disks: [PointDisk]) {
        self.point = point
        self.tags = tags
        self.disks = disks
    }

    /// Whether this says the point is stored and restorable (its chunks must be kept).
    var isLive: Bool { point.status == .active && point.deletion != .deleted }

    /// This manifest with its times to the millisecond, as the catalog keeps them: two that
    /// say the same compare equal however finely each was written.
    var atCatalogPrecision: PointManifest {
        func ms(_ date: Date?) -> Date? {
            date.map { Date(timeIntervalSince1970: ($0.timeIntervalSince1970 * 1000).rounded() / 1000) }
        }
        var copy = self
        copy.point.slot = ms(point.slot)
        copy.point.startedAt = ms(point.startedAt) ?? point.startedAt
        copy.point.finishedAt = ms(point.finishedAt)
        copy.point.deletedAt = ms(point.deletedAt)
        return copy
    }

    /// The file as it is stored.
    struct File: Codable {
        var format = PointManifest.format
        var point: PointEntry
        var tags: [TagEntry]
        var disks: [DiskEntry]
    }

    struct PointEntry: Codable {
        var id: String
        var serverId: Int64?
        var serverName: String
        var vaultId: Int64?
        var vaultName: String
        var name: String
        var description: String
        var kind: PointKind
        var schedule: ScheduleType
        var status: PointStatus
        var error: String?
        var parentId: String?
        var chainId: String
        var slot: Date?
        var startedAt: Date
        var finishedAt: Date?
        var deletion: Deletion
        var deletedAt: Date?
        var progressDone: Int64
        var progressTotal: Int64
        var frozenMs: Int64?
        var warning: String?
    }

    struct TagEntry: Codable {
        var pointId: String
        var key: String
        var value: String
    }

    struct DiskEntry: Codable {
        var pointId: String
        var disk: String
        var size: Int64
        var dataBytes: Int64
        var changedBytes: Int64
        var newBytes: Int64
        var bytesRead: Int64?
    }

    var file: File {
        let p = point
        return File(
            point: PointEntry(
                id: p.id, serverId: p.serverId, serverName: p.serverName, vaultId: p.vaultId,
                vaultName: p.vaultName, name: p.name, description: p.description, kind: p.kind,
                schedule: p.schedule, status: p.status, error: p.error, parentId: p.parentId,
                chainId: p.chainId, slot: p.slot, startedAt: p.startedAt, finishedAt: p.finishedAt,
                deletion: p.deletion, deletedAt: p.deletedAt, progressDone: p.progressDone,
                progressTotal: p.progressTotal, frozenMs: p.frozenMs, warning: p.warning),
            tags: tags.map { TagEntry(pointId: $0.pointId, key: $0.key, value: $0.value) },
            disks: disks.map {
                DiskEntry(
                    pointId: $0.pointId, disk: $0.disk, size: $0.size, dataBytes: $0.dataBytes,
                    changedBytes: $0.changedBytes, newBytes: $0.newBytes, bytesRead: $0.bytesRead)
            })
    }

    /// The manifest a file holds once every field is checked against what a repository
    /// allows, so a damaged one that still parses is refused, naming `path`, never trusted.
    init(_ file: File, path: String) throws {
        func bad(_ why: String) -> VaultError { VaultError(.corrupt, "manifest \(path) is damaged: \(why)") }
        guard file.format == Self.format else { throw bad("unknown format \(file.format)") }
        let e = file.point
        guard path.hasSuffix("/\(e.id).json"), UUID(uuidString: e.id) != nil else {
            throw bad("its point id does not match its name")
        }
        guard (try? Names.validatePointName(e.name)) != nil, !e.serverName.isEmpty else {
            throw bad("bad point or server name")
        }
        guard file.disks.count <= Names.maxDisks, file.tags.count <= 10 else { throw bad("too many disks or tags") }
        for disk in file.disks {
            // Plain comparisons: a range built from a damaged size could itself trap.
            guard disk.pointId == e.id, disk.size >= 0, disk.size <= ChunkMap.maxDiskSize,
                disk.dataBytes >= 0, disk.dataBytes <= disk.size, disk.changedBytes >= 0,
                disk.changedBytes <= disk.size,
                disk.newBytes >= 0, (disk.bytesRead ?? 0) >= 0, (try? Names.validateDisk(disk.disk)) != nil
            else { throw bad("bad disk record '\(disk.disk)'") }
        }
        for tag in file.tags where tag.pointId != e.id { throw bad("a tag of another point") }
        guard ManifestTimes.contain(e.slot, e.startedAt, e.finishedAt, e.deletedAt) else {
            throw bad("a time out of range")
        }
        guard e.progressDone >= 0, e.progressTotal >= 0 else { throw bad("negative progress") }
        guard (e.warning?.utf8.count ?? 0) <= 4096 else { throw bad("a warning of more than 4096 bytes") }
        if let parent = e.parentId, UUID(uuidString: parent) == nil { throw bad("bad parent id") }
        point = Point(
            id: e.id, serverId: e.serverId, serverName: e.serverName, vaultId: e.vaultId, vaultName: e.vaultName,
            name: e.name, description: e.description, kind: e.kind, schedule: e.schedule, status: e.status,
            error: e.error, parentId: e.parentId, chainId: e.chainId, slot: e.slot, startedAt: e.startedAt,
            finishedAt: e.finishedAt, deletion: e.deletion, deletedAt: e.deletedAt,
            progressDone: e.progressDone, progressTotal: e.progressTotal,
            frozenMs: e.frozenMs.map { max(0, $0) }, warning: e.warning)
        tags = file.tags.map { PointTag(pointId: $0.pointId, key: $0.key, value: $0.value) }
        disks = file.disks.map {
            PointDisk(
                pointId: $0.pointId, disk: $0.disk, size: $0.size, dataBytes: $0.dataBytes,
                changedBytes: $0.changedBytes, newBytes: $0.newBytes, bytesRead: $0.bytesRead)
        }
    }
}

/// A vault and its policy: `manifests/vaults/<name>.json`.
struct VaultManifest: Sendable, Equatable {
    var name: String
    var createdAt: Date
    var policy: Policy?

    init(_ vault: Vault) {
        name = vault.name
        createdAt = vault.createdAt
        policy = vault.policy
    }

    struct File: Codable {
        var format = PointManifest.format
        var vault: Entry
    }

    struct Entry: Codable {
        var id: Int64?
        var name: String
        var createdAt: Date
        var policyStartMinute: Int?
        var policyEveryHours: Int?
        var policyIncrementals: Int?
        var policyKeepFulls: Int?
        var policySince: Date?
    }

    var file: File {
        File(
            vault: Entry(
                id: nil, name: name, createdAt: createdAt, policyStartMinute: policy?.startMinute,
                policyEveryHours: policy?.everyHours, policyIncrementals: policy?.incrementals,
                policyKeepFulls: policy?.keepFulls, policySince: policy?.since))
    }

    /// Checks every field: a policy out of range would make the scheduler and retention of
    /// every vault fail, so the file is refused with its name.
    init(_ file: File, name: String, path: String) throws {
        func bad(_ why: String) -> VaultError { VaultError(.corrupt, "manifest \(path) is damaged: \(why)") }
        guard file.format == PointManifest.format else { throw bad("unknown format \(file.format)") }
        let e = file.vault
        guard e.name == name else { throw bad("it names vault '\(e.name)'") }
        guard (try? Names.validateVaultOrServer(name, what: "vault")) != nil else { throw bad("bad vault name") }
        guard ManifestTimes.contain(e.createdAt, e.policySince) else { throw bad("a time out of range") }
        self.name = name
        createdAt = e.createdAt
        switch (e.policyStartMinute, e.policyEveryHours, e.policyIncrementals, e.policyKeepFulls, e.policySince) {
        case (nil, nil, nil, nil, nil):
            policy = nil
        case (let start?, let every?, let incrementals?, let keep?, let since?):
            do {
                policy = try Policy(
                    startMinute: start, everyHours: every, incrementals: incrementals, keepFulls: keep, since: since)
            } catch let error as VaultError {
                throw bad("its policy is impossible: \(error.message)")
            }
        default:
            throw bad("its policy is impossible: a value is missing")
        }
    }
}

/// A server, its vault (by name), whether it has hooks, and its disks:
/// `manifests/servers/<name>.json`.
struct ServerManifest: Sendable {
    var name: String
    var createdAt: Date
    var hooks: Bool
    var vault: String?
    var disks: [(name: String, path: String)]

    init(_ server: Server, vault: String?, disks: [Disk]) {
        name = server.name
        createdAt = server.createdAt
        hooks = server.hooks
        self.vault = vault
        self.disks = disks.map { (name: $0.name, path: $0.path) }
    }

    struct File: Codable {
        var format = PointManifest.format
        var server: Entry
        var vault: String?
        var disks: [DiskEntry]
    }

    struct Entry: Codable {
        var id: Int64?
        var name: String
        var vaultId: Int64?
        var hooks: Bool
        var createdAt: Date

        init(name: String, hooks: Bool, createdAt: Date) {
            self.name = name
            self.hooks = hooks
            self.createdAt = createdAt
        }

        private enum CodingKeys: String, CodingKey { case id, name, vaultId, hooks, createdAt }
        /// Manifests written before hooks were host configuration held the commands themselves.
        private enum LegacyKeys: String, CodingKey { case freezeCommand, thawCommand }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            id = try container.decodeIfPresent(Int64.self, forKey: .id)
            name = try container.decode(String.self, forKey: .name)
            vaultId = try container.decodeIfPresent(Int64.self, forKey: .vaultId)
            createdAt = try container.decode(Date.self, forKey: .createdAt)
            if let hooks = try container.decodeIfPresent(Bool.self, forKey: .hooks) {
                self.hooks = hooks
            } else {
                // Such a manifest says only that hooks exist: the command it names is never run.
                let legacy = try decoder.container(keyedBy: LegacyKeys.self)
                hooks = try [LegacyKeys.freezeCommand, .thawCommand].contains {
                    try legacy.decodeIfPresent(String.self, forKey: $0).map { !$0.isEmpty } ?? false
                }
            }
        }
    }

    /// A disk as format 1 holds it: readers of that format need a `serverId`, which is 0.
    struct DiskEntry: Codable {
        var id: Int64?
        var serverId: Int64 = 0
        var name: String
        var path: String
    }

    var file: File {
        File(
            server: Entry(name: name, hooks: hooks, createdAt: createdAt), vault: vault,
            disks: disks.map { DiskEntry(name: $0.name, path: $0.path) })
    }

    /// Checks every field, refusing the file with its name.
    init(_ file: File, name: String, path: String) throws {
        func bad(_ why: String) -> VaultError { VaultError(.corrupt, "manifest \(path) is damaged: \(why)") }
        guard file.format == PointManifest.format else { throw bad("unknown format \(file.format)") }
        guard file.server.name == name else { throw bad("it names server '\(file.server.name)'") }
        guard (try? Names.validateVaultOrServer(name, what: "server")) != nil else { throw bad("bad server name") }
        guard ManifestTimes.contain(file.server.createdAt) else { throw bad("a time out of range") }
        if let vault = file.vault, (try? Names.validateVaultOrServer(vault, what: "vault")) == nil {
            throw bad("bad vault name")
        }
        let disks = file.disks.map { (name: $0.name, path: $0.path) }
        do {
            try Names.validateDisks(disks, server: name)
        } catch let error as VaultError {
            throw bad(error.message)
        }
        self.name = name
        createdAt = file.server.createdAt
        hooks = file.server.hooks
        vault = file.vault
        self.disks = disks
    }
}

/// The times a manifest may hold: years 1900 to 9999. Others cannot be stored in the catalog
/// and read back, so one would make every read of its table fail.
enum ManifestTimes {
    static let range = Date(timeIntervalSince1970: -2_208_988_800)...Date(timeIntervalSince1970: 253_402_300_799)

    /// Whether every time given is one a manifest may hold.
    static func contain(_ dates: Date?...) -> Bool { dates.allSatisfy { $0.map(range.contains) ?? true } }
}
