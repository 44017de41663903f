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
    var historyPath: String { "\(directory)/history.jsonl" }

    /// Most bytes the history keeps: past it, the older half goes.
    static let historyLimit = 1 << 20

    /// Adds `entry` to this host's restore history (one JSON line, appended whole). A history
    /// that cannot be written never fails the restore: the caller gets the reason to say.
    @discardableResult
    public func record(_ entry: RestoreHistoryEntry) -> String? {
        do {
            if !Posix.exists(directory) { try Posix.makeDirectories(directory, mode: 0o700) }
            try requireTrusted(directory, isDirectory: true)
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = .sortedKeys
            let line = Array(try encoder.encode(entry)) + [10]
            if Posix.fileSize(historyPath) + Int64(line.count) > Self.historyLimit {
                let kept = (try? Posix.readFile(historyPath, limit: 2 * Self.historyLimit)) ?? []
                let half = kept.dropFirst(kept.count / 2)
                let tail = half.firstIndex(of: 10).map { half[($0 + 1)...] } ?? []
                try Posix.writeFileAtomically(historyPath, Array(tail), mode: 0o600)
            }
            let fd = try Posix.open(historyPath, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, mode: 0o600)
            defer { close(fd) }
            try line.withUnsafeBytes { try Posix.writeAll(fd, $0, path: historyPath) }
            return nil
        } catch {
            return "the restore history \(historyPath) was not written: \(error)"
        }
    }

    /// This host's restores, oldest first; lines that cannot be read are skipped.
    public func history() throws -> [RestoreHistoryEntry] {
        guard Posix.exists(historyPath) else { return [] }
        try requireTrusted(directory, isDirectory: true)
        try requireTrusted(historyPath, isDirectory: false)
        let bytes = try Posix.readFile(historyPath, limit: 2 * Self.historyLimit)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return bytes.split(separator: 10).compactMap { try? decoder.decode(RestoreHistoryEntry.self, from: Data($0)) }
    }
}
