import Foundation
internal import GRDB

// The catalog's tables as GRDB reads and writes them. Rows stay inside Catalog/: the rest of
// the core sees the values (`Vault`, `Server`, `Point`...), and the repository's manifests
// have their own types, so a change of the schema changes neither.

/// A row of `vault`. A policy out of range (only a hand edit of the catalog file can store
/// one: every way in checks it) is read as no policy, so no computation on it can trap.
struct VaultRow: FetchableRecord, TableRecord {
    static let databaseTableName = "vault"
    let vault: Vault

    init(row: Row) throws {
        let start: Int? = try row.column("policyStartMinute")
        let every: Int? = try row.column("policyEveryHours")
        let incrementals: Int? = try row.column("policyIncrementals")
        let keep: Int? = try row.column("policyKeepFulls")
        let since: Date? = try row.column("policySince")
        var policy: Policy?
        if let start, let every, let incrementals, let keep, let since {
            policy = try? Policy(
                startMinute: start, everyHours: every, incrementals: incrementals, keepFulls: keep, since: since)
        }
        vault = Vault(
            id: try row.column("id"), name: try row.column("name"), createdAt: try row.column("createdAt"),
            policy: policy)
    }

    static func named(_ name: String, _ db: Database) throws -> Vault? {
        try filter(Column("name") == name).fetchOne(db)?.vault
    }

    static func all(_ db: Database) throws -> [Vault] {
        try order(Column("name")).fetchAll(db).map(\.vault)
    }

    private static func arguments(_ policy: Policy?) -> [(any DatabaseValueConvertible)?] {
        [policy?.startMinute, policy?.everyHours, policy?.incrementals, policy?.keepFulls, policy?.since]
    }

    static func insert(name: String, createdAt: Date, policy: Policy?, _ db: Database) throws -> Vault {
        try db.execute(
            sql: """
                INSERT INTO vault (name, createdAt, policyStartMinute, policyEveryHours, policyIncrementals, policyKeepFulls, policySince)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: StatementArguments([name, createdAt] + arguments(policy)))
        return Vault(id: db.lastInsertedRowID, name: name, createdAt: createdAt, policy: policy)
    }

    static func setPolicy(_ policy: Policy?, vault id: Int64, _ db: Database) throws {
        try db.execute(
            sql: """
                UPDATE vault SET policyStartMinute = ?, policyEveryHours = ?, policyIncrementals = ?, policyKeepFulls = ?,
                  policySince = ? WHERE id = ?
                """, arguments: StatementArguments(arguments(policy) + [id]))
    }
}

/// A row of `server`.
struct ServerRow: FetchableRecord, TableRecord {
    static let databaseTableName = "server"
    let server: Server

    init(row: Row) throws {
        server = Server(
            id: try row.column("id"), name: try row.column("name"), vaultId: try row.column("vaultId"),
            hooks: try row.column("hooks"), createdAt: try row.column("createdAt"))
    }

    static func named(_ name: String, _ db: Database) throws -> Server? {
        try filter(Column("name") == name).fetchOne(db)?.server
    }

    static func insert(name: String, vaultId: Int64?, hooks: Bool, createdAt: Date, _ db: Database) throws -> Server {
        try db.execute(
            sql: "INSERT INTO server (name, vaultId, hooks, createdAt) VALUES (?, ?, ?, ?)",
            arguments: [name, vaultId, hooks, createdAt])
        return Server(id: db.lastInsertedRowID, name: name, vaultId: vaultId, hooks: hooks, createdAt: createdAt)
    }
}

/// A row of `disk`.
struct DiskRow: FetchableRecord, TableRecord {
    static let databaseTableName = "disk"
    let disk: Disk

    init(row: Row) throws {
        disk = Disk(
            id: try row.column("id"), serverId: try row.column("serverId"), name: try row.column("name"),
            path: try row.column("path"))
    }

    static func of(server id: Int64, _ db: Database) throws -> [Disk] {
        try filter(Column("serverId") == id).order(Column("name")).fetchAll(db).map(\.disk)
    }

    static func insert(server id: Int64, name: String, path: String, _ db: Database) throws {
        try db.execute(sql: "INSERT INTO disk (serverId, name, path) VALUES (?, ?, ?)", arguments: [id, name, path])
    }
}

/// A row of `point`. Read by column, not through `Decodable`: the mount reads every point of
/// the catalog when it changes, and GRDB's decoder took most of that time with 10,000 points.
struct PointRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "point"
    let point: Point

    init(_ point: Point) { self.point = point }

    init(row: Row) throws {
        point = Point(
            id: try row.column("id"), serverId: try row.column("serverId"), serverName: try row.column("serverName"),
            vaultId: try row.column("vaultId"), vaultName: try row.column("vaultName"), name: try row.column("name"),
            description: try row.column("description"), kind: try row.named("kind"),
            schedule: try row.named("schedule"),
            status: try row.named("status"), error: try row.column("error"), parentId: try row.column("parentId"),
            chainId: try row.column("chainId"), slot: try row.column("slot"), startedAt: try row.column("startedAt"),
            finishedAt: try row.column("finishedAt"), deletion: try row.named("deletion"),
            deletedAt: try row.column("deletedAt"), progressDone: try row.column("progressDone"),
            progressTotal: try row.column("progressTotal"), frozenMs: try row.column("frozenMs"),
            warning: try row.column("warning"))
    }

    func encode(to container: inout PersistenceContainer) {
        container["id"] = point.id
        container["serverId"] = point.serverId
        container["serverName"] = point.serverName
        container["vaultId"] = point.vaultId
        container["vaultName"] = point.vaultName
        container["name"] = point.name
        container["description"] = point.description
        container["kind"] = point.kind.rawValue
        container["schedule"] = point.schedule.rawValue
        container["status"] = point.status.rawValue
        container["error"] = point.error
        container["parentId"] = point.parentId
        container["chainId"] = point.chainId
        container["slot"] = point.slot
        container["startedAt"] = point.startedAt
        container["finishedAt"] = point.finishedAt
        container["deletion"] = point.deletion.rawValue
        container["deletedAt"] = point.deletedAt
        container["progressDone"] = point.progressDone
        container["progressTotal"] = point.progressTotal
        container["frozenMs"] = point.frozenMs
        container["warning"] = point.warning
    }

    static func find(_ id: String, _ db: Database) throws -> Point? {
        try fetchOne(db, key: id)?.point
    }
}

extension QueryInterfaceRequest<PointRow> {
    /// The points this request selects.
    func points(_ db: Database) throws -> [Point] { try fetchAll(db).map(\.point) }
}

/// A row of `pointTag`.
struct PointTagRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "pointTag"
    let tag: PointTag

    init(_ tag: PointTag) { self.tag = tag }

    init(row: Row) throws {
        tag = PointTag(pointId: try row.column("pointId"), key: try row.column("key"), value: try row.column("value"))
    }

    func encode(to container: inout PersistenceContainer) {
        container["pointId"] = tag.pointId
        container["key"] = tag.key
        container["value"] = tag.value
    }
}

/// A row of `pointDisk`.
struct PointDiskRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "pointDisk"
    let disk: PointDisk

    init(_ disk: PointDisk) { self.disk = disk }

    init(row: Row) throws {
        disk = PointDisk(
            pointId: try row.column("pointId"), disk: try row.column("disk"), size: try row.column("size"),
            dataBytes: try row.column("dataBytes"), changedBytes: try row.column("changedBytes"),
            newBytes: try row.column("newBytes"), bytesRead: try row.column("bytesRead"))
    }

    func encode(to container: inout PersistenceContainer) {
        container["pointId"] = disk.pointId
        container["disk"] = disk.disk
        container["size"] = disk.size
        container["dataBytes"] = disk.dataBytes
        container["changedBytes"] = disk.changedBytes
        container["newBytes"] = disk.newBytes
        container["bytesRead"] = disk.bytesRead
    }
}

extension Row {
    /// A column's value. A value the column cannot hold (a damaged catalog) is refused with
    /// the command that rebuilds the catalog, never a crash.
    func column<T: DatabaseValueConvertible>(_ name: String) throws -> T {
        do { return try decode(T.self, forColumn: name) } catch {
            throw VaultError(
                .needsRepair,
                "the catalog's \(name) column holds a value it cannot read (\(error)); rebuild it with 'vaultctl repair --rebuild-catalog'"
            )
        }
    }

    /// A column holding one of an enumeration's names.
    func named<T: RawRepresentable>(_ name: String) throws -> T where T.RawValue == String {
        let text: String = try column(name)
        guard let value = T(rawValue: text) else {
            throw VaultError(
                .needsRepair,
                "the catalog has a point whose \(name) is '\(text)'; rebuild it with 'vaultctl repair --rebuild-catalog'"
            )
        }
        return value
    }
}

/// A row of a table of point details (tags, disks), kept by point id.
protocol PointDetailRow: FetchableRecord, TableRecord {
    var pointId: String { get }
    /// The column the details of one point are ordered by.
    static var orderColumn: String { get }
    associatedtype Value
    var value: Value { get }
}

extension PointDetailRow {
    /// The details of one point, in order.
    static func of(point id: String, _ db: Database) throws -> [Value] {
        try filter(Column("pointId") == id).order(Column(orderColumn)).fetchAll(db).map(\.value)
    }
}

extension PointTagRow: PointDetailRow {
    var pointId: String { tag.pointId }
    static let orderColumn = "key"
    var value: PointTag { tag }
}

extension PointDiskRow: PointDetailRow {
    var pointId: String { disk.pointId }
    static let orderColumn = "disk"
    var value: PointDisk { disk }
}
