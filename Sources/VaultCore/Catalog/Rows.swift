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
/// Read by position too (RowReader), in the order `columns` selects them.
struct PointRow: PositionalRow, PersistableRecord {
    static let databaseTableName = "point"
    static let columns = [
        "id", "serverId", "serverName", "vaultId", "vaultName", "name", "description", "kind", "schedule", "status",
        "error", "parentId", "chainId", "slot", "startedAt", "finishedAt", "deletion", "deletedAt", "progressDone",
        "progressTotal", "frozenMs", "warning",
    ]
    static var databaseSelection: [any SQLSelectable] { columns.map { Column($0) } }
    let point: Point

    init(_ point: Point) { self.point = point }

    init(row: Row) throws {
        var read = RowReader(row, columns: Self.columns)
        point = Point(
            id: try read.next(), serverId: try read.next(), serverName: try read.next(), vaultId: try read.next(),
            vaultName: try read.next(), name: try read.next(), description: try read.next(), kind: try read.named(),
            schedule: try read.named(), status: try read.named(), error: try read.next(), parentId: try read.next(),
            chainId: try read.next(), slot: try read.next(), startedAt: try read.next(), finishedAt: try read.next(),
            deletion: try read.named(), deletedAt: try read.next(), progressDone: try read.next(),
            progressTotal: try read.next(), frozenMs: try read.next(), warning: try read.next())
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

extension PointRow {
    /// The points `ids` names, in no order.
    static func rows(ids: [String], _ db: Database) throws -> [Point] {
        guard !ids.isEmpty else { return [] }
        return try fetchAll(db, sql: select(whereIn: "id", ids.count), arguments: StatementArguments(ids)).map(\.point)
    }
}

/// A row read by position (RowReader): its columns, in the order it reads them, are its
/// `databaseSelection`.
protocol PositionalRow: FetchableRecord, TableRecord {
    static var columns: [String] { get }
}

extension PositionalRow {
    /// Its columns, each named with its table, in the order it reads them: what a `SELECT`
    /// of it gives, never `table.*` (a table's own order may be another).
    static var selection: String { columns.map { "\(databaseTableName).\($0)" }.joined(separator: ", ") }

    /// `SELECT` of this record's columns where `column` is one of `count` arguments. In SQL of
    /// its own: GRDB's query builder took longer to write it than SQLite to run it. Not kept
    /// prepared, as each count is a statement of its own.
    static func select(whereIn column: String, _ count: Int) -> String {
        let marks = Array(repeating: "?", count: count).joined(separator: ", ")
        return "SELECT \(selection) FROM \(databaseTableName) WHERE \(column) IN (\(marks))"
    }
}

extension QueryInterfaceRequest<PointRow> {
    /// The points this request selects.
    func points(_ db: Database) throws -> [Point] { try fetchAll(db).map(\.point) }
}

/// A row of `pointTag`.
struct PointTagRow: PositionalRow, PersistableRecord {
    static let databaseTableName = "pointTag"
    let tag: PointTag

    init(_ tag: PointTag) { self.tag = tag }

    static let columns = ["pointId", "key", "value"]
    static var databaseSelection: [any SQLSelectable] { columns.map { Column($0) } }

    init(row: Row) throws {
        var read = RowReader(row, columns: Self.columns)
        tag = PointTag(pointId: try read.next(), key: try read.next(), value: try read.next())
    }

    func encode(to container: inout PersistenceContainer) {
        container["pointId"] = tag.pointId
        container["key"] = tag.key
        container["value"] = tag.value
    }
}

/// A row of `pointDisk`.
struct PointDiskRow: PositionalRow, PersistableRecord {
    static let databaseTableName = "pointDisk"
    let disk: PointDisk

    init(_ disk: PointDisk) { self.disk = disk }

    static let columns = ["pointId", "disk", "size", "dataBytes", "changedBytes", "newBytes", "bytesRead"]
    static var databaseSelection: [any SQLSelectable] { columns.map { Column($0) } }

    init(row: Row) throws {
        var read = RowReader(row, columns: Self.columns)
        disk = PointDisk(
            pointId: try read.next(), disk: try read.next(), size: try read.next(), dataBytes: try read.next(),
            changedBytes: try read.next(), newBytes: try read.next(), bytesRead: try read.next())
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

/// A row read by position, in the order its record's `databaseSelection` names the columns:
/// through SQLite's own column functions, without GRDB's lookup of each column by name, which
/// was most of the time of a page of 100 points. A value a column cannot hold is refused as
/// `Row.column` refuses it.
struct RowReader {
    private let row: Row
    private let columns: [String]
    private var index = 0

    init(_ row: Row, columns: [String]) {
        self.row = row
        self.columns = columns
    }

    mutating func next<T: DatabaseValueConvertible & StatementColumnConvertible>() throws -> T {
        defer { index += 1 }
        let name = columns.indices.contains(index) ? columns[index] : "\(index)"
        guard index < row.count else { throw Row.damaged(name, "it is missing") }
        do { return try row.decode(T.self, atIndex: index) } catch { throw Row.damaged(name, "\(error)") }
    }

    mutating func named<T: RawRepresentable>() throws -> T where T.RawValue == String {
        let name = columns.indices.contains(index) ? columns[index] : "\(index)"
        let text: String = try next()
        guard let value = T(rawValue: text) else { throw Row.unknownName(name, text) }
        return value
    }
}

extension Row {
    static func damaged(_ name: String, _ reason: String) -> VaultError {
        VaultError(
            .needsRepair,
            "the catalog's \(name) column holds a value it cannot read (\(reason)); rebuild it with 'vaultctl repair --rebuild-catalog'"
        )
    }

    static func unknownName(_ name: String, _ text: String) -> VaultError {
        VaultError(
            .needsRepair,
            "the catalog has a point whose \(name) is '\(text)'; rebuild it with 'vaultctl repair --rebuild-catalog'")
    }

    /// A column's value. A value the column cannot hold (a damaged catalog) is refused with
    /// the command that rebuilds the catalog, never a crash.
    func column<T: DatabaseValueConvertible>(_ name: String) throws -> T {
        do { return try decode(T.self, forColumn: name) } catch { throw Self.damaged(name, "\(error)") }
    }
}

/// A row of a table of point details (tags, disks), kept by point id.
protocol PointDetailRow: PositionalRow {
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
