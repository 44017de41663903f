import Foundation
import GRDB

/// The SQLite catalog (WAL mode) shared by every process using a repository.
public final class Catalog: Sendable {
    let pool: DatabasePool
    public static let schemaVersion = "v1"

    init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.foreignKeysEnabled = true
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw Self.wrap(error, "cannot open the catalog \(path)")
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE vault (
                  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, createdAt DATETIME NOT NULL,
                  policyStartMinute INTEGER, policyEveryHours INTEGER, policyIncrementals INTEGER,
                  policyKeepFulls INTEGER, policySince DATETIME);
                CREATE TABLE server (
                  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
                  vaultId INTEGER REFERENCES vault(id), freezeCommand TEXT, thawCommand TEXT,
                  createdAt DATETIME NOT NULL);
                CREATE TABLE disk (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  serverId INTEGER NOT NULL REFERENCES server(id) ON DELETE CASCADE,
                  name TEXT NOT NULL, path TEXT NOT NULL, UNIQUE(serverId, name));
                CREATE TABLE point (
                  id TEXT PRIMARY KEY, serverId INTEGER REFERENCES server(id) ON DELETE SET NULL,
                  serverName TEXT NOT NULL, vaultId INTEGER REFERENCES vault(id) ON DELETE SET NULL,
                  vaultName TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
                  kind TEXT NOT NULL, schedule TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
                  parentId TEXT REFERENCES point(id), chainId TEXT NOT NULL, slot DATETIME,
                  startedAt DATETIME NOT NULL, finishedAt DATETIME, deletion TEXT NOT NULL,
                  deletedAt DATETIME, progressDone INTEGER NOT NULL, progressTotal INTEGER NOT NULL);
                CREATE UNIQUE INDEX pointNameInUse ON point(serverId, name) WHERE deletion != 'deleted';
                CREATE INDEX pointByServer ON point(serverId, startedAt);
                CREATE INDEX pointByParent ON point(parentId);
                CREATE TABLE pointTag (
                  pointId TEXT NOT NULL REFERENCES point(id) ON DELETE CASCADE,
                  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(pointId, key));
                CREATE TABLE pointDisk (
                  pointId TEXT NOT NULL REFERENCES point(id) ON DELETE CASCADE, disk TEXT NOT NULL,
                  size INTEGER NOT NULL, dataBytes INTEGER NOT NULL, changedBytes INTEGER NOT NULL,
                  newBytes INTEGER NOT NULL, PRIMARY KEY(pointId, disk));
                """)
        }
        return migrator
    }

    /// Reads in a snapshot-isolated transaction.
    public func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.read(body) } catch { throw Self.wrap(error, "catalog read failed") }
    }

    /// Writes in one immediate transaction.
    public func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.write(body) } catch { throw Self.wrap(error, "catalog write failed") }
    }

    static func wrap(_ error: any Error, _ what: String) -> VaultError {
        if let error = error as? VaultError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_FULL: return VaultError(.noSpace, "\(what): no space left on device")
            case .SQLITE_BUSY, .SQLITE_LOCKED: return VaultError(.busy, "\(what): the catalog is busy")
            case .SQLITE_NOTADB, .SQLITE_CORRUPT: return VaultError(.corrupt, "\(what): the catalog is damaged")
            default: return VaultError(.io, what, cause: error.message.map { VaultError(.io, $0) } ?? error)
            }
        }
        return VaultError(.io, what, cause: error)
    }
}
