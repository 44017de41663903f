import Foundation
import GRDB

/// A vault's backup policy (seed 000): launch time, interval, incrementals between fulls, and
/// how many fulls (chains) to keep. `since` is when it was set: slots before it never run.
public struct Policy: Codable, Equatable, Sendable {
    public var startMinute: Int
    public var everyHours: Int
    public var incrementals: Int
    public var keepFulls: Int
    public var since: Date

    public init(startMinute: Int, everyHours: Int, incrementals: Int, keepFulls: Int, since: Date) {
        self.startMinute = startMinute
        self.everyHours = everyHours
        self.incrementals = incrementals
        self.keepFulls = keepFulls
        self.since = since
    }

    /// The policy given to a vault created on the fly by a backup of a server with no vault:
    /// a daily full at 00:00 with no incrementals, keeping 7 — the safest simple default.
    public static func makeDefault(since: Date) -> Policy {
        Policy(startMinute: 0, everyHours: 24, incrementals: 0, keepFulls: 7, since: since)
    }

    public var startText: String { String(format: "%02d:%02d", startMinute / 60, startMinute % 60) }

    /// The ranges a policy's values must be in: every computation on a policy (slots,
    /// chains, retention) relies on them.
    public static let startMinutes = 0..<(24 * 60)
    public static let everyHoursRange = 1...8760
    public static let incrementalsRange = 0...100_000
    public static let keepFullsRange = 1...100_000

    /// Why this policy cannot be used, or nil when every value is in its range.
    public var problem: String? {
        if !Self.startMinutes.contains(startMinute) { return "start minute \(startMinute) is not a time of day" }
        if !Self.everyHoursRange.contains(everyHours) { return "every \(everyHours)h is not 1 to 8760 hours" }
        if !Self.incrementalsRange.contains(incrementals) { return "\(incrementals) incrementals is not 0 to 100000" }
        if !Self.keepFullsRange.contains(keepFulls) { return "keeping \(keepFulls) fulls is not 1 to 100000" }
        if !since.timeIntervalSince1970.isFinite { return "its start date is not a date" }
        return nil
    }

    /// Refuses a policy with a value out of its range.
    public func check() throws {
        if let problem { throw VaultError(.invalidArgument, "bad policy: \(problem)") }
    }
}

public struct Vault: Codable, FetchableRecord, MutablePersistableRecord, Sendable {
    public static let databaseTableName = "vault"
    public var id: Int64?
    public var name: String
    public var createdAt: Date
    public var policyStartMinute: Int?
    public var policyEveryHours: Int?
    public var policyIncrementals: Int?
    public var policyKeepFulls: Int?
    public var policySince: Date?

    /// The vault's policy. Values out of range (only a hand edit of the catalog file can
    /// store them: every way in checks them) are taken as no policy, so no computation on
    /// them can trap or loop.
    public var policy: Policy? {
        get {
            guard let s = policyStartMinute, let e = policyEveryHours, let i = policyIncrementals,
                  let k = policyKeepFulls, let since = policySince else { return nil }
            let policy = Policy(startMinute: s, everyHours: e, incrementals: i, keepFulls: k, since: since)
            return policy.problem == nil ? policy : nil
        }
        set {
            policyStartMinute = newValue?.startMinute
            policyEveryHours = newValue?.everyHours
            policyIncrementals = newValue?.incrementals
            policyKeepFulls = newValue?.keepFulls
            policySince = newValue?.since
        }
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

public struct Server: Codable, FetchableRecord, MutablePersistableRecord, Sendable {
    public static let databaseTableName = "server"
    public var id: Int64?
    public var name: String
    public var vaultId: Int64?
    /// Whether the server has freeze/thaw hooks. What they run is host configuration
    /// (`HostServers`), never read from the repository, which anyone who can write it could
    /// otherwise turn into a command run as root.
    public var hooks: Bool
    public var createdAt: Date

    public init(id: Int64?, name: String, vaultId: Int64?, hooks: Bool, createdAt: Date) {
        self.id = id
        self.name = name
        self.vaultId = vaultId
        self.hooks = hooks
        self.createdAt = createdAt
    }

    private enum CodingKeys: String, CodingKey { case id, name, vaultId, hooks, createdAt }
    /// Manifests written before hooks were host configuration held the commands themselves.
    private enum LegacyKeys: String, CodingKey { case freezeCommand, thawCommand }

    public init(from decoder: any Decoder) throws {
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

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

public struct Disk: Codable, FetchableRecord, MutablePersistableRecord, Sendable, Equatable {
    public static let databaseTableName = "disk"
    public var id: Int64?
    public var serverId: Int64
    public var name: String
    public var path: String

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

public enum PointKind: String, Codable, Sendable { case full, incremental }
public enum ScheduleType: String, Codable, Sendable { case policy, manual }
public enum PointStatus: String, Codable, Sendable { case creating, active, failed }
/// Deletion state: none, soft-deleted (restorable) or deleted for good.
public enum Deletion: String, Codable, Sendable { case none = "", soft, deleted }

public struct Point: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    public static let databaseTableName = "point"
    public var id: String
    public var serverId: Int64?
    public var serverName: String
    public var vaultId: Int64?
    public var vaultName: String
    public var name: String
    public var description: String
    public var kind: PointKind
    public var schedule: ScheduleType
    public var status: PointStatus
    public var error: String?
    public var parentId: String?
    public var chainId: String
    public var slot: Date?
    public var startedAt: Date
    public var finishedAt: Date?
    public var deletion: Deletion
    public var deletedAt: Date?
    public var progressDone: Int64
    public var progressTotal: Int64
}

extension Point {
    /// Read by column, not through `Decodable`: the mount reads every point of the catalog when
    /// it changes, and GRDB's decoder took most of that time with 10,000 points.
    public init(row: Row) throws {
        id = try row.column("id")
        serverId = try row.column("serverId")
        serverName = try row.column("serverName")
        vaultId = try row.column("vaultId")
        vaultName = try row.column("vaultName")
        name = try row.column("name")
        description = try row.column("description")
        kind = try row.named("kind")
        schedule = try row.named("schedule")
        status = try row.named("status")
        error = try row.column("error")
        parentId = try row.column("parentId")
        chainId = try row.column("chainId")
        slot = try row.column("slot")
        startedAt = try row.column("startedAt")
        finishedAt = try row.column("finishedAt")
        deletion = try row.named("deletion")
        deletedAt = try row.column("deletedAt")
        progressDone = try row.column("progressDone")
        progressTotal = try row.column("progressTotal")
    }
}

extension Row {
    /// A column's value. A value the column cannot hold (a damaged catalog) is refused with
    /// the command that rebuilds the catalog, never a crash.
    func column<T: DatabaseValueConvertible>(_ name: String) throws -> T {
        do { return try decode(T.self, forColumn: name) } catch {
            throw VaultError(.needsRepair, "the catalog's \(name) column holds a value it cannot read (\(error)); rebuild it with 'vaultctl repair --rebuild-catalog'")
        }
    }

    /// A column holding one of an enumeration's names.
    func named<T: RawRepresentable>(_ name: String) throws -> T where T.RawValue == String {
        let text: String = try column(name)
        guard let value = T(rawValue: text) else {
            throw VaultError(.needsRepair, "the catalog has a point whose \(name) is '\(text)'; rebuild it with 'vaultctl repair --rebuild-catalog'")
        }
        return value
    }
}

public struct PointTag: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    public static let databaseTableName = "pointTag"
    public var pointId: String
    public var key: String
    public var value: String
}

extension PointTag {
    /// Read by column, as `Point` is.
    public init(row: Row) throws {
        pointId = try row.column("pointId")
        key = try row.column("key")
        value = try row.column("value")
    }
}

/// Sizes of one disk in one point: logical size, non-zero bytes of the whole image, bytes
/// of the positions this point recorded, and bytes newly written to the store.
public struct PointDisk: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    public static let databaseTableName = "pointDisk"
    public var pointId: String
    public var disk: String
    public var size: Int64
    public var dataBytes: Int64
    public var changedBytes: Int64
    public var newBytes: Int64
}

extension PointDisk {
    /// Read by column, as `Point` is.
    public init(row: Row) throws {
        pointId = try row.column("pointId")
        disk = try row.column("disk")
        size = try row.column("size")
        dataBytes = try row.column("dataBytes")
        changedBytes = try row.column("changedBytes")
        newBytes = try row.column("newBytes")
    }
}
