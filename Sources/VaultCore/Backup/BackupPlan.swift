import Foundation

/// What to back up: one server, under one name, as a full or an incremental point.
public struct BackupPlan: Sendable {
    public var server: String
    public var name: String
    public var description: String
    public var tags: [(key: String, value: String)]
    /// Only these disks (the seeds' disk backup); nil backs up every disk of the server.
    public var disks: [String]?
    public var schedule: ScheduleType
    public var kind: PointKind
    public var parentId: String?
    public var slot: Date?

    /// A "backup now": always full, schedule type manual.
    public static func manual(
        server: String, name: String, description: String = "",
        tags: [(key: String, value: String)] = [], disks: [String]? = nil
    ) -> BackupPlan {
        BackupPlan(
            server: server, name: name, description: description, tags: tags, disks: disks,
            schedule: .manual, kind: .full, parentId: nil, slot: nil)
    }
}
