import Foundation
internal import GRDB

/// Everything the mount shows, read in one consistent transaction.
public struct Inventory: Sendable {
    public var vaults: [Vault]
    public var servers: [Server]
    /// Points that are not deleted (soft or for good), oldest first.
    public var points: [Point]
    public var disks: [String: [PointDisk]]

    public init(vaults: [Vault], servers: [Server], points: [Point], disks: [String: [PointDisk]]) {
        self.vaults = vaults
        self.servers = servers
        self.points = points
        self.disks = disks
    }
}

extension Catalog {
    public func inventory() throws -> Inventory {
        try read { db in
            let points = try PointRow.filter(Column("deletion") == Deletion.none.rawValue)
                .order(Column("startedAt"), Column("id")).points(db)
            let disks = try PointDiskRow.fetchAll(
                db,
                sql: """
                    SELECT \(PointDiskRow.selection) FROM pointDisk JOIN point ON point.id = pointDisk.pointId
                    WHERE point.deletion = '' ORDER BY pointDisk.disk
                    """
            ).map(\.disk)
            return Inventory(
                vaults: try VaultRow.all(db),
                servers: try ServerRow.order(Column("name")).fetchAll(db).map(\.server),
                points: points, disks: Dictionary(grouping: disks, by: \.pointId))
        }
    }
}
