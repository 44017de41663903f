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

    public var policy: Policy? {
        get {
            guard let s = policyStartMinute, let e = policyEveryHours, let i = policyIncrementals,
                  let k = policyKeepFulls, let since = policySince else { return nil }
            return Policy(startMinute: s, everyHours: e, incrementals: i, keepFulls: k, since: since)
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
    public var freezeCommand: String?
    public var thawCommand: String?
    public var createdAt: Date

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

public struct PointTag: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    public static let databaseTableName = "pointTag"
    public var pointId: String
    public var key: String
    public var value: String
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
