import Foundation

/// A point as users see it (seed 001): in `vaultctl points --json` and in `point.json`.
/// What a disk holds: its partition table, if any, and each filesystem found, with why one
/// is not shown under `files/`.
public struct DiskContentsView: Codable, Sendable {
    public struct VolumeView: Codable, Sendable {
        /// The name under `files/`: the disk's (`root`) or a partition's (`data.part1`).
        public var name: String
        public var partition: Int?
        public var offset: Int64
        public var size: Int64
        public var partitionType: String?
        public var partitionName: String?
        public var filesystem: String?
        public var label: String?
        public var uuid: String?
        public var shown: Bool
        public var notes: [String]
        public var reason: String?

        public init(name: String, partition: Int?, offset: Int64, size: Int64) {
            self.name = name
            self.partition = partition
            self.offset = offset
            self.size = size
            shown = false
            notes = []
        }
    }

    public var partitionTable: String?
    public var volumes: [VolumeView]

    public init(partitionTable: String?, volumes: [VolumeView]) {
        self.partitionTable = partitionTable
        self.volumes = volumes
    }
}

public struct PointView: Codable, Sendable {
    public struct DiskView: Codable, Sendable {
        public var name: String
        public var size: Int64
        public var storedBytes: Int64
        public var changedBytes: Int64
        public var newBytes: Int64
        /// What the backup read from the disk: only the changed extents for a snapshot source
        /// diffed from its parent; nil for points made before it was counted.
        public var bytesRead: Int64?
        /// Partitions and filesystems found on the disk, where a reader looked (the mount's
        /// point.json); nil otherwise.
        public var contents: DiskContentsView?
    }

    public struct ProgressView: Codable, Sendable {
        public var doneBytes: Int64
        public var totalBytes: Int64
        public var percent: Int
    }

    public var id: String
    public var name: String
    public var server: String
    public var vault: String
    public var type: String
    public var scheduleType: String
    public var status: String
    public var error: String?
    public var estimatedSize: Int64
    /// The size of its disks, together.
    public var diskBytes: Int64
    /// What this point added to the repository: its new chunks, as stored (compressed).
    public var addedBytes: Int64
    /// What deleting it alone would free (`points --unique`); nil when not asked for.
    public var uniqueBytes: Int64?
    public var location: String
    public var time: String
    public var finishedAt: String?
    public var parent: String?
    public var description: String
    public var tags: [String: String]
    public var disks: [DiskView]
    public var progress: ProgressView?
    public var deletion: String
    /// How long the server was frozen (freeze hook to thaw hook, or the snapshot), in ms.
    public var frozenMs: Int64?
    /// What went other than planned in a point that did not fail.
    public var warning: String?
    /// Set by `backup --json` when that backup put the server in a vault (it was in none).
    public var enrolledIn: EnrolmentView?
    /// Set in a mount's point.json when the point is a copy a copy policy made.
    public var copyOf: CopyOrigin?

    /// What a copied point is a copy of: the same point (its id) in another location.
    public struct CopyOrigin: Codable, Sendable, Equatable {
        /// The location of the vault it was copied from; nil when it could not be told.
        public var location: String?
        public var point: String

        public init(location: String?, point: String) {
            self.location = location
            self.point = point
        }
    }

    /// The vault a server's first backup put it in, and its policy.
    public struct EnrolmentView: Codable, Sendable {
        public var vault: String
        public var created: Bool
        public var start: String?
        public var everyHours: Int?
        public var incrementals: Int?
        public var keepFulls: Int?

        public init(_ enrolment: BackupJob.Enrolment) {
            vault = enrolment.vault
            created = enrolment.created
            start = enrolment.policy?.startText
            everyHours = enrolment.policy?.everyHours
            incrementals = enrolment.policy?.incrementals
            keepFulls = enrolment.policy?.keepFulls
        }
    }

    public init(_ point: Point, disks: [PointDisk], tags: [PointTag], location: String) {
        id = point.id
        name = point.name
        server = point.serverName
        vault = point.vaultName
        type = point.kind == .full ? "Full" : "Incremental"
        scheduleType = point.schedule == .policy ? "Policy" : "Manual"
        // A purged point is gone: not Active, whatever it was before.
        status = point.deletion == .deleted ? "Purged" : Self.statusText(point.status)
        error = point.error
        estimatedSize = disks.reduce(0) { $0 + $1.changedBytes }
        diskBytes = disks.reduce(0) { $0 + $1.size }
        addedBytes = disks.reduce(0) { $0 + $1.newBytes }
        self.location = location
        time = Units.formatTime(point.startedAt)
        finishedAt = point.finishedAt.map(Units.formatTime)
        parent = point.parentId
        description = point.description
        // Keys the catalog tells apart by bytes may be one String (é, and e with U+0301, from
        // a manifest someone else wrote): the first is kept, never a trap.
        self.tags = Dictionary(tags.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        self.disks = disks.map {
            DiskView(
                name: $0.disk, size: $0.size, storedBytes: $0.dataBytes,
                changedBytes: $0.changedBytes, newBytes: $0.newBytes, bytesRead: $0.bytesRead)
        }
        frozenMs = point.frozenMs
        warning = point.warning
        if point.status == .creating {
            // In Double: a catalog row may hold any two integers, and done * 100 must not trap.
            let percent =
                point.progressTotal > 0
                ? Int(min(100, max(0, Double(point.progressDone) / Double(point.progressTotal) * 100))) : 0
            progress = ProgressView(doneBytes: point.progressDone, totalBytes: point.progressTotal, percent: percent)
        }
        deletion = Self.deletionText(point.deletion)
    }

    static func deletionText(_ deletion: Deletion) -> String {
        switch deletion {
        case .none: return ""
        case .soft: return "Soft deleted"
        case .deleted: return "Deleted"
        }
    }

    /// One word per state, the same in `points`, `history`, `point.json` and `history.json`
    /// (seed 001's history words: a failed attempt is "Error").
    static func statusText(_ status: PointStatus) -> String {
        switch status {
        case .creating: return "Creating"
        case .active: return "Active"
        case .failed: return "Error"
        }
    }
}

/// A policy in one line, as `vault list` and the console show it.
public func policyText(_ policy: Policy?) -> String {
    guard let policy else { return "none (manual backups only)" }
    return
        "start \(policy.startText), every \(policy.everyHours)h, \(policy.incrementals) incrementals between fulls, keep \(policy.keepFulls) fulls"
}

/// A vault's policy as `policy.json` and `policy show --json` print it.
public struct PolicyView: Codable, Sendable {
    public var vault: String
    public var enabled: Bool
    public var start: String?
    public var everyHours: Int?
    public var incrementals: Int?
    public var keepFulls: Int?
    public var since: String?

    public init(_ vault: Vault) {
        self.vault = vault.name
        enabled = vault.policy != nil
        start = vault.policy?.startText
        everyHours = vault.policy?.everyHours
        incrementals = vault.policy?.incrementals
        keepFulls = vault.policy?.keepFulls
        since = vault.policy.map { Units.formatTime($0.since) }
    }
}

extension Repository {
    public func view(of point: Point) throws -> PointView {
        PointView(
            point, disks: try catalog.pointDisks(point.id), tags: try catalog.tags(point.id), location: location.name)
    }

    /// The views of `points`, all of one server when `server` is given: a few points are read
    /// one by one, more with two queries whatever their number (`points` of a server with
    /// 10,000 took 3.2 s one by one). Without a server, up to a thousand points' rows are
    /// asked for by id, and more by reading the whole tables.
    public func views(of points: [Point], server: Int64? = nil) throws -> [PointView] {
        guard points.count > 8 else { return try points.map { try view(of: $0) } }
        let ids = server == nil && points.count <= 1000 ? points.map(\.id) : nil
        let disks = try catalog.pointDisksByPoint(server: server, ids: ids)
        let tags = try catalog.tagsByPoint(server: server, ids: ids)
        return points.map { PointView($0, disks: disks[$0.id] ?? [], tags: tags[$0.id] ?? [], location: location.name) }
    }

    /// Every backup attempt (every point, failed and deleted ones too), oldest first, as the
    /// same point objects `points` shows.
    public func history(server: Int64? = nil, filter: PointFilter = PointFilter()) throws -> [PointView] {
        try views(of: catalog.allPoints(server: server).filter(filter.matches), server: server)
    }
}

/// JSON as vaultfs prints it: pretty, keys sorted, times in ISO 8601 UTC, one trailing
/// newline; the bytes Foundation's JSONEncoder would write, written faster (SortedJSONEncoder).
public enum JSON {
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        ((try? SortedJSONEncoder(pretty: true).encode(value)) ?? Array("null".utf8)) + [10]
    }

    /// One line of JSON (keys sorted), for a stream of objects: JSON Lines.
    public static func encodeLine<T: Encodable>(_ value: T) -> [UInt8] {
        ((try? SortedJSONEncoder(pretty: false).encode(value)) ?? Array("null".utf8)) + [10]
    }
}

/// A vault as `vault list --json` and `vault show --json` give it: its servers and policy.
public struct VaultView: Codable, Sendable {
    public var vault: String
    public var servers: [String]
    public var policy: PolicyView
    /// The location that holds it, when a listing covers several.
    public var location: String?
    /// Its copy policy, when it has one (in the location it lives in).
    public var copy: CopyPolicy?
    /// Whether this is a copy (in a mirror location), when a listing covers several locations.
    public var isCopy: Bool?

    public init(_ vault: Vault, servers: [String], location: String? = nil, locations: Locations? = nil) {
        self.vault = vault.name
        self.servers = servers
        policy = PolicyView(vault)
        self.location = location
        if let location, let locations {
            isCopy = locations.isMirror(location)
            if isCopy == false { copy = locations.copyPolicy(of: vault.name) }
        }
    }
}

/// A server as `server list --json` and `server show --json` give it.
public struct ServerView: Codable, Sendable {
    public struct DiskView: Codable, Sendable {
        public var name: String
        public var path: String
    }

    public var server: String
    public var vault: String?
    public var disks: [DiskView]
    /// Whether the repository says the server has hooks.
    public var hooks: Bool
    /// What its hooks run on this host (host configuration, not repository data).
    public var freezeCommand: String?
    public var thawCommand: String?
    /// How this host reaches the Ceph cluster of its `rbd:` disks, when it says.
    public var cephConf: String?
    public var cephId: String?
    /// The dirty bitmaps of its NBD disks, and the QMP socket vaultctl keeps them through.
    public var bitmap: String?
    public var qmp: String?
    /// The location that holds it, when a listing covers several.
    public var location: String?
    /// Whether it is there as a copy (its vault is copied there by a copy policy), when a
    /// listing covers several locations.
    public var isCopy: Bool?

    /// `here` is the server as this host backs it up into this repository, when it does.
    public init(
        _ server: Server, vault: String?, disks: [Disk], hooks: Hooks?, here: HostServer? = nil, location: String? = nil
    ) {
        self.location = location
        self.server = server.name
        self.vault = vault
        self.disks = disks.map { DiskView(name: $0.name, path: $0.path) }
        self.hooks = server.hooks
        freezeCommand = hooks?.freeze
        thawCommand = hooks?.thaw
        cephConf = here?.ceph.conf
        cephId = here?.ceph.id
        bitmap = here?.bitmap?.name
        qmp = here?.bitmap?.qmp
    }
}

/// What `verify --json` found.
public struct VerifyView: Codable, Sendable {
    public struct ProblemView: Codable, Sendable {
        public var what: String
        public var reason: String
    }

    public var clean: Bool
    public var points: Int
    public var chunks: Int
    public var problems: [ProblemView]
    public var affected: [PointView]
}

/// What `retention apply --json` deleted (or, with `--dry-run`, would delete) in one vault.
public struct RetentionView: Codable, Sendable {
    public var vault: String
    public var dryRun: Bool
    public var points: [PointView]
    /// Why garbage collection did not run after the deletion; absent when it ran.
    public var garbageCollectionProblem: String?

    public init(vault: String, dryRun: Bool, points: [PointView], garbageCollectionProblem: String? = nil) {
        self.vault = vault
        self.dryRun = dryRun
        self.points = points
        self.garbageCollectionProblem = garbageCollectionProblem
    }
}

/// What `purge --json` did.
public struct PurgeView: Codable, Sendable {
    public var purged: [PointView]
    /// Why garbage collection did not run after the purge; absent when it ran.
    public var garbageCollectionProblem: String?

    public init(purged: [PointView], garbageCollectionProblem: String?) {
        self.purged = purged
        self.garbageCollectionProblem = garbageCollectionProblem
    }
}

/// What `export --json` wrote.
public struct ExportView: Codable, Sendable {
    public var point: String
    public var server: String
    public var name: String
    public var disk: String
    public var output: String
    public var size: Int64

    public init(point: Point, disk: String, output: String, size: Int64) {
        self.point = point.id
        server = point.serverName
        name = point.name
        self.disk = disk
        self.output = output
        self.size = size
    }
}

/// What `restore --json` reports: the bytes written, made zero and left as they were, and
/// the bytes of the target read to compare.
public struct RestoreView: Codable, Sendable {
    public var point: String
    public var server: String
    public var name: String
    public var disk: String
    public var target: String
    public var size: Int64
    public var fromPoint: String?
    public var createdTarget: Bool
    public var writtenBytes: Int64
    public var writtenChunks: Int
    public var zeroedBytes: Int64
    public var zeroedChunks: Int
    public var unchangedBytes: Int64
    public var unchangedChunks: Int
    public var comparedBytes: Int64
    public var seconds: Double

    public init(_ report: RestoreReport) {
        point = report.point.id
        server = report.point.serverName
        name = report.point.name
        disk = report.disk
        target = report.target
        size = report.size
        fromPoint = report.fromPoint?.id
        createdTarget = report.createdTarget
        writtenBytes = report.writtenBytes
        writtenChunks = report.writtenChunks
        zeroedBytes = report.zeroedBytes
        zeroedChunks = report.zeroedChunks
        unchangedBytes = report.unchangedBytes
        unchangedChunks = report.unchangedChunks
        comparedBytes = report.comparedBytes
        seconds = report.seconds
    }
}

extension Repository {
    /// A verification report as `verify --json` gives it.
    public func view(of report: Verifier.Report) throws -> VerifyView {
        VerifyView(
            clean: report.isClean, points: report.points, chunks: report.chunks,
            problems: report.problems.map { VerifyView.ProblemView(what: $0.what, reason: $0.reason) },
            affected: try report.affected.map { try view(of: $0) })
    }
}

/// `vaultctl restore --instant --json`: the restore, where its image is, and how far it is.
public struct InstantRestoreView: Codable, Sendable {
    public var id: String
    public var point: String
    public var server: String
    public var name: String
    public var disk: String
    public var target: String
    public var size: Int64
    public var createdTarget: Bool
    /// The writable image in a running mount; nil until a mount of the repository serves it.
    public var image: String?
    public var status: InstantRestoreStatus

    public init(record: InstantRestoreRecord, image: String?, status: InstantRestoreStatus) {
        id = record.id
        point = record.point
        server = record.server
        name = record.pointName
        disk = record.disk
        target = record.target
        size = record.size
        createdTarget = record.newTarget
        self.image = image
        self.status = status
    }
}
