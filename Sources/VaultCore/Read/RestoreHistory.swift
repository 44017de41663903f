import Foundation
import Glibc

/// One restore this host ran, as `vaultctl restore history` shows it: what it restored, where,
/// how it ended, and what it wrote and left alone.
public struct RestoreHistoryEntry: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// Compared chunk by chunk with the target.
        case compare
        /// `--from-point`: the two points' maps compared.
        case fromPoint = "from-point"
        case instant
    }

    public enum Outcome: String, Codable, Sendable {
        case done, failed
        /// An instant restore set up, finished (the target holds the disk) or cancelled.
        case started, finished, cancelled
    }

    public var time: Date
    public var kind: Kind
    public var outcome: Outcome
    public var server: String
    public var pointName: String
    public var point: String
    public var disk: String
    public var target: String
    public var size: Int64
    /// An instant restore's id.
    public var id: String?
    public var fromPoint: String?
    public var writtenBytes: Int64?
    public var zeroedBytes: Int64?
    public var unchangedBytes: Int64?
    public var comparedBytes: Int64?
    /// An instant restore's bytes in the target when it ended.
    public var filledBytes: Int64?
    public var seconds: Double?
    public var error: String?

    public init(
        time: Date = Date(), kind: Kind, outcome: Outcome, point: Point, disk: String, target: String, size: Int64
    ) {
        self.time = time
        self.kind = kind
        self.outcome = outcome
        server = point.serverName
        pointName = point.name
        self.point = point.id
        self.disk = disk
        self.target = target
        self.size = size
    }

    /// A diff-only restore that ended.
    public init(_ report: RestoreReport) {
        self.init(
            kind: report.fromPoint == nil ? .compare : .fromPoint, outcome: .done, point: report.point,
            disk: report.disk, target: report.target, size: report.size)
        fromPoint = report.fromPoint?.id
        writtenBytes = report.writtenBytes
        zeroedBytes = report.zeroedBytes
        unchangedBytes = report.unchangedBytes
        comparedBytes = report.comparedBytes
        seconds = report.seconds
    }

    /// An instant restore's step.
    public init(_ record: InstantRestoreRecord, outcome: Outcome, filledBytes: Int64? = nil) {
        time = Date()
        kind = .instant
        self.outcome = outcome
        server = record.server
        pointName = record.pointName
        point = record.point
        disk = record.disk
        target = record.target
        size = record.size
        id = record.id
        self.filledBytes = filledBytes
        if outcome != .started { seconds = Date().timeIntervalSince(record.createdAt) }
    }
}

extension InstantRestores {
    var historyLog: HistoryLog<RestoreHistoryEntry> { HistoryLog(directory: directory) }

    /// Adds `entry` to this host's restore history. A history that cannot be written never
    /// fails the restore: the caller gets the reason to say.
    @discardableResult
    public func record(_ entry: RestoreHistoryEntry) -> String? {
        historyLog.append(entry, what: "restore")
    }

    /// This host's restores, oldest first; lines that cannot be read are skipped.
    public func history() throws -> [RestoreHistoryEntry] {
        try historyLog.entries()
    }
}
