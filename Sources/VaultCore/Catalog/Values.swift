import Foundation

/// A vault's backup policy (seed 000): launch time, interval, incrementals between fulls, and
/// how many fulls (chains) to keep. `since` is when it was set: slots before it never run.
/// Every value is in its range: the only way to make one checks them, so nothing computed
/// from a policy (slots, chains, retention) can divide by zero, trap or loop.
public struct Policy: Equatable, Sendable {
    public let startMinute: Int
    public let everyHours: Int
    public let incrementals: Int
    public let keepFulls: Int
    public let since: Date

    /// A policy; refused, with the value that is wrong, when one is out of its range.
    public init(startMinute: Int, everyHours: Int, incrementals: Int, keepFulls: Int, since: Date) throws {
        if let problem = Self.problem(
            startMinute: startMinute, everyHours: everyHours, incrementals: incrementals,
            keepFulls: keepFulls, since: since)
        {
            throw VaultError(.invalidArgument, "bad policy: \(problem)")
        }
        self.startMinute = startMinute
        self.everyHours = everyHours
        self.incrementals = incrementals
        self.keepFulls = keepFulls
        self.since = since
    }

    /// The policy given to a vault created on the fly by a backup of a server with no vault:
    /// a daily full at 00:00 with no incrementals, keeping 7 — the safest simple default.
    public static func makeDefault(since: Date) throws -> Policy {
        try Policy(startMinute: 0, everyHours: 24, incrementals: 0, keepFulls: 7, since: since)
    }

    public var startText: String { String(format: "%02d:%02d", startMinute / 60, startMinute % 60) }

    /// The ranges a policy's values must be in.
    public static let startMinutes = 0..<(24 * 60)
    public static let everyHoursRange = 1...8760
    public static let incrementalsRange = 0...100_000
    public static let keepFullsRange = 1...100_000

    /// Why these values make no policy, or nil when every one is in its range.
    static func problem(startMinute: Int, everyHours: Int, incrementals: Int, keepFulls: Int, since: Date) -> String? {
        if !startMinutes.contains(startMinute) { return "start minute \(startMinute) is not a time of day" }
        if !everyHoursRange.contains(everyHours) { return "every \(everyHours)h is not 1 to 8760 hours" }
        if !incrementalsRange.contains(incrementals) { return "\(incrementals) incrementals is not 0 to 100000" }
        if !keepFullsRange.contains(keepFulls) { return "keeping \(keepFulls) fulls is not 1 to 100000" }
        if !since.timeIntervalSince1970.isFinite { return "its start date is not a date" }
        return nil
    }
}

/// A group of servers sharing one policy.
public struct Vault: Equatable, Sendable {
    /// The catalog's id: local to one catalog, never stored in the repository's meaning.
    public let id: Int64
    public var name: String
    public var createdAt: Date
    public var policy: Policy?

    public init(id: Int64, name: String, createdAt: Date, policy: Policy?) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.policy = policy
    }
}

/// A machine whose disks are backed up.
public struct Server: Equatable, Sendable {
    public let id: Int64
    public var name: String
    public var vaultId: Int64?
    /// Whether the server has freeze/thaw hooks. What they run is host configuration
    /// (`HostServers`), never read from the repository, which anyone who can write it could
    /// otherwise turn into a command run as root.
    public var hooks: Bool
    public var createdAt: Date

    public init(id: Int64, name: String, vaultId: Int64?, hooks: Bool, createdAt: Date) {
        self.id = id
        self.name = name
        self.vaultId = vaultId
        self.hooks = hooks
        self.createdAt = createdAt
    }
}

/// One disk of a server, by its name in the repository and the path it was added with.
public struct Disk: Equatable, Sendable {
    public let id: Int64
    public var serverId: Int64
    public var name: String
    public var path: String

    public init(id: Int64, serverId: Int64, name: String, path: String) {
        self.id = id
        self.serverId = serverId
        self.name = name
        self.path = path
    }
}

public enum PointKind: String, Codable, Sendable { case full, incremental }
public enum ScheduleType: String, Codable, Sendable { case policy, manual }
public enum PointStatus: String, Codable, Sendable { case creating, active, failed }
/// Deletion state: none, soft-deleted (restorable) or deleted for good.
public enum Deletion: String, Codable, Sendable { case none = "", soft, deleted }

/// A restore point, or an attempt at one (`status` says which). Its server and vault are
/// kept by name too, so a point outlives both.
public struct Point: Equatable, Sendable {
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
    /// How long the server was frozen for this point, from its freeze command's start to its
    /// thaw command's end (a snapshot's making, for snapshot sources); nil when it had no
    /// hooks and no snapshot.
    public var frozenMs: Int64? = nil
    /// What went other than planned but did not fail the point (a disk read in full because
    /// its parent's snapshot was gone).
    public var warning: String? = nil
}

/// One tag of a point.
public struct PointTag: Equatable, Sendable {
    public var pointId: String
    public var key: String
    public var value: String
}

/// Sizes of one disk in one point: logical size, non-zero bytes of the whole image, bytes
/// of the positions this point recorded, bytes newly written to the store, and bytes read
/// from the disk (nil for points made before vaultfs counted them).
public struct PointDisk: Equatable, Sendable {
    public var pointId: String
    public var disk: String
    public var size: Int64
    public var dataBytes: Int64
    public var changedBytes: Int64
    public var newBytes: Int64
    public var bytesRead: Int64? = nil
}

/// Which points a listing or a deletion takes, besides their server: all of them when
/// nothing is set.
/// Which points a paged listing takes (the console's points and history): a filter, and the
/// rest a listing selects by, all answered by the catalog in one query.
public struct PointSelection: Sendable, Equatable {
    public var server: Int64?
    public var filter = PointFilter()
    public var schedule: ScheduleType?
    /// Only points of this status that are not deleted for good.
    public var status: PointStatus?
    /// Only points with this tag (of any value when `tagValue` is nil).
    public var tagKey: String?
    public var tagValue: String?
    /// Every attempt, deleted ones too (history); else what `points` lists.
    public var history = false
    public var includeSoftDeleted = false

    public init() {}
}

public struct PointFilter: Sendable, Equatable {
    public var vault: String?
    public var kind: PointKind?
    /// Started at or after.
    public var since: Date?
    /// Started before.
    public var before: Date?

    public init(vault: String? = nil, kind: PointKind? = nil, since: Date? = nil, before: Date? = nil) {
        self.vault = vault
        self.kind = kind
        self.since = since
        self.before = before
    }

    public var isEmpty: Bool { self == PointFilter() }

    public func matches(_ point: Point) -> Bool {
        (vault == nil || point.vaultName == vault) && (kind == nil || point.kind == kind)
            && (since.map { point.startedAt >= $0 } ?? true) && (before.map { point.startedAt < $0 } ?? true)
    }
}
