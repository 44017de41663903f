import Foundation
internal import GRDB
import Synchronization

/// The SQLite catalog (WAL mode) shared by every process using a repository. It is an index
/// of what the repository's manifests say: opening never creates one, and when the
/// repository cannot be written it is opened read-only, so every reading command still works.
public final class Catalog: Sendable {
    /// The connection in use, and which file it was opened from. `repair --rebuild-catalog`
    /// puts a new file in place; a process that outlives it (the mount) notices the new
    /// inode at its next `changeCount` or `followReplacement` and opens that one.
    private struct Opened: Sendable {
        var database: any DatabaseWriter
        var inode: ino_t
        /// How many times the file was found replaced: part of `changeCount`.
        var replacements: Int64
        /// A connection that never reads or writes rows: `PRAGMA data_version` on it moves
        /// with every commit made through any other connection, this process's writer included.
        var watcher: DatabaseQueue?
    }

    private let opened: Mutex<Opened>
    private let path: String
    private let foreignKeys: Bool
    var database: any DatabaseWriter { opened.withLock { $0.database } }
    /// Why the catalog cannot be written (read-only media, a full disk, another user's
    /// repository), or nil when it can.
    public let readOnlyReason: String?
    public static let schemaVersion = "v1"
    /// Where `changeCount` opens its own connection, or the file it looks at when SQLite reads
    /// it as immutable (no locks, no -shm file: `data_version` would never move).
    private let watched: (path: String, immutable: Bool)

    /// Creates a new, empty catalog at `path` with exactly `mode`.
    static func create(at path: String, mode: mode_t) throws -> Catalog {
        close(try Posix.createFile(path, mode: mode, what: "cannot create the catalog"))
        return try Catalog(path: path, readOnlyReason: nil)
    }

    /// Opens an existing catalog; `readOnlyReason` says why the repository cannot be
    /// written, when that is already known. A missing or damaged catalog is refused with the
    /// command that rebuilds it, and never recreated empty.
    init(path: String, readOnlyReason knownReason: String?, foreignKeys: Bool = true) throws {
        let inode = try Self.inode(of: path)
        let (database, reason, watched) = try Self.open(path, readOnlyReason: knownReason, foreignKeys: foreignKeys)
        opened = Mutex(Opened(database: database, inode: inode, replacements: 0))
        self.path = path
        self.foreignKeys = foreignKeys
        readOnlyReason = reason
        self.watched = watched
    }

    private static func inode(of path: String) throws -> ino_t {
        var st = stat()
        guard stat(path, &st) == 0 else {
            if errno != ENOENT { throw Posix.error("cannot open the catalog", path) }
            throw VaultError(
                .needsRepair,
                "the catalog \(path) is missing; nothing was changed. Rebuild it from the repository's manifests with 'vaultctl -R \((path as NSString).deletingLastPathComponent) repair --rebuild-catalog'"
            )
        }
        return st.st_ino
    }

    /// Opens the catalog at `path` for writing, or, when it cannot be written, for reading.
    private static func open(_ path: String, readOnlyReason knownReason: String?, foreignKeys: Bool) throws -> (
        any DatabaseWriter, String?, (path: String, immutable: Bool)
    ) {
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.foreignKeysEnabled = foreignKeys
        var reason = knownReason
        if reason == nil {
            do {
                let pool = try DatabasePool(path: path, configuration: configuration)
                try Self.migrator.migrate(pool)
                Self.addListingIndexes(pool)
                return (pool, nil, (path, false))
            } catch let error as DatabaseError
                where [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM]
                .contains(error.resultCode)
            {
                reason =
                    error.resultCode == .SQLITE_FULL || error.resultCode == .SQLITE_IOERR
                    ? "its disk is full or failing (\(error.message ?? "\(error.resultCode)"))"
                    : "its catalog cannot be written (\(error.message ?? "\(error.resultCode)"))"
            } catch {
                throw Self.wrap(error, "cannot open the catalog \(path)")
            }
        }
        configuration.readonly = true
        // Read-only media cannot hold SQLite's shared-memory file: fall back to reading the
        // file as immutable, which needs neither locks nor the -shm file.
        var lastError: (any Error)?
        for parameter in ["mode=ro", "immutable=1"] {
            do {
                let uri = "file:\(Self.uriPath(path))?\(parameter)"
                let queue = try DatabaseQueue(path: uri, configuration: configuration)
                guard try queue.read({ try Self.migrator.hasCompletedMigrations($0) }) else {
                    throw VaultError(
                        .unsupportedFormat,
                        "the catalog \(path) needs an upgrade that a read-only repository cannot take")
                }
                return (queue, reason, parameter == "immutable=1" ? (path, true) : (uri, false))
            } catch let error as VaultError {
                throw error
            } catch {
                lastError = error
            }
        }
        throw Self.wrap(lastError!, "cannot open the catalog \(path)")
    }

    /// Opens the catalog again when its file was replaced (by `repair --rebuild-catalog`)
    /// since it was opened; returns how many times that has happened. A catalog that is
    /// missing now is left open as it is: the next look tries again.
    @discardableResult
    public func followReplacement() throws -> Int64 {
        var st = stat()
        let current = opened.withLock { ($0.inode, $0.replacements) }
        guard stat(path, &st) == 0, st.st_ino != current.0 else { return current.1 }
        let (database, reason, _) = try Self.open(path, readOnlyReason: readOnlyReason, foreignKeys: foreignKeys)
        guard reason == readOnlyReason else {
            Self.retire([database])
            throw VaultError(
                .readOnly,
                "the catalog \(path) was replaced by one that cannot be opened as the old one was (\(reason ?? "writable")); still using the old one"
            )
        }
        return opened.withLock { opened in
            guard opened.inode == current.0 else {
                Self.retire([database])
                return opened.replacements
            }
            Self.retire([opened.database] + (opened.watcher.map { [$0] } ?? []))
            opened = Opened(database: database, inode: st.st_ino, replacements: opened.replacements + 1)
            return opened.replacements
        }
    }

    /// Connections to a catalog file that was replaced, kept open for the life of the
    /// process. Closing the last one would have SQLite checkpoint it and delete its WAL and
    /// shared-memory files by name: the names are the new catalog's now. A replacement is
    /// `repair --rebuild-catalog`, rare, so what this keeps stays small.
    private static let retired = Mutex<[any DatabaseWriter]>([])

    private static func retire(_ databases: [any DatabaseWriter]) {
        retired.withLock { $0 += databases }
    }

    /// A path as the path part of an SQLite URI.
    private static func uriPath(_ path: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#%")
        return path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path
    }

    /// Indexes that let a page of points (the console's listings) be read in time order
    /// without sorting them all, and counted from the index. Not a migration: a catalog
    /// without them reads the same, only slower, so one on read-only media is still taken,
    /// and an older vaultctl opens one with them. Made once, when missing and the catalog
    /// can be written; a failure to make them is no failure of the catalog.
    static func addListingIndexes(_ pool: DatabasePool) {
        let indexes = [("pointByDeletionTime", "point(deletion, startedAt, id)")]
        guard
            let present = try? pool.read({ db in
                try String.fetchSet(db, sql: "SELECT name FROM sqlite_master WHERE type = 'index'")
            })
        else { return }
        let missing = indexes.filter { !present.contains($0.0) }
        guard !missing.isEmpty else { return }
        try? pool.write { db in
            for (name, columns) in missing { try db.execute(sql: "CREATE INDEX IF NOT EXISTS \(name) ON \(columns)") }
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
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
        // A failed attempt no longer holds its name: a backup-now that could not start can be
        // tried again under the same name once its cause is fixed.
        migrator.registerMigration("v2") { db in
            try db.execute(
                sql: """
                    DROP INDEX pointNameInUse;
                    CREATE UNIQUE INDEX pointNameInUse ON point(serverId, name) WHERE deletion != 'deleted' AND status != 'failed';
                    """)
        }
        // Hook commands leave the catalog: they are host configuration, and the catalog only
        // says that a server has hooks.
        migrator.registerMigration("v3") { db in
            try db.execute(
                sql: """
                    ALTER TABLE server ADD COLUMN hooks BOOLEAN NOT NULL DEFAULT 0;
                    UPDATE server SET hooks = 1 WHERE coalesce(freezeCommand, '') != '' OR coalesce(thawCommand, '') != '';
                    ALTER TABLE server DROP COLUMN freezeCommand;
                    ALTER TABLE server DROP COLUMN thawCommand;
                    """)
        }
        // What a backup read and how long it froze its server (changed-block sources), and
        // a warning for a point that succeeded another way than planned.
        migrator.registerMigration("v4") { db in
            try db.execute(
                sql: """
                    ALTER TABLE point ADD COLUMN frozenMs INTEGER;
                    ALTER TABLE point ADD COLUMN warning TEXT;
                    ALTER TABLE pointDisk ADD COLUMN bytesRead INTEGER;
                    """)
        }
        return migrator
    }

    /// Reads in a snapshot-isolated transaction.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try database.read(body) } catch { throw Self.wrap(error, "catalog read failed") }
    }

    /// Writes in one immediate transaction; refused with the reason when the repository
    /// cannot be written.
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        if let readOnlyReason {
            throw VaultError(
                .readOnly,
                "the repository cannot be written: \(readOnlyReason); only listing, export, verify and the mount work")
        }
        do { return try database.write(body) } catch { throw Self.wrap(error, "catalog write failed") }
    }

    /// A number that changes whenever the catalog is committed to, by this process or any
    /// other: what was built from the catalog is current while it stays the same. For a
    /// catalog read as immutable it is made from the file's identity, size and time.
    public func changeCount() throws -> Int64 {
        try followReplacement()
        if watched.immutable {
            var st = stat()
            guard lstat(watched.path, &st) == 0 else { throw Posix.error("cannot look at the catalog", watched.path) }
            var hasher = Hasher()
            for part in [
                Int64(st.st_ino), Int64(st.st_size), Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec),
                Int64(st.st_ctim.tv_sec), Int64(st.st_ctim.tv_nsec),
            ] { hasher.combine(part) }
            return Int64(hasher.finalize())
        }
        let watchedPath = watched.path
        do {
            // The count and the replacements are read together: a new file starts its own
            // count, and the replacements keep the two apart.
            return try opened.withLock { opened in
                if opened.watcher == nil {
                    var configuration = Configuration()
                    configuration.readonly = true
                    configuration.busyMode = .timeout(30)
                    opened.watcher = try DatabaseQueue(path: watchedPath, configuration: configuration)
                }
                let version =
                    try opened.watcher!.inDatabase { try Int64.fetchOne($0, sql: "PRAGMA data_version") } ?? 0
                return version &+ opened.replacements << 40
            }
        } catch {
            throw Self.wrap(error, "catalog read failed")
        }
    }

    static func wrap(_ error: any Error, _ what: String) -> VaultError {
        if let error = error as? VaultError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_FULL: return VaultError(.noSpace, "\(what): no space left on device")
            case .SQLITE_BUSY, .SQLITE_LOCKED: return VaultError(.busy, "\(what): the catalog is busy")
            case .SQLITE_NOTADB, .SQLITE_CORRUPT:
                return VaultError(
                    .needsRepair,
                    "\(what): the catalog is damaged; rebuild it from the repository's manifests with 'vaultctl repair --rebuild-catalog'"
                )
            case .SQLITE_READONLY: return VaultError(.readOnly, "\(what): the catalog is read-only")
            default: return VaultError(.io, what, cause: error.message.map { VaultError(.io, $0) } ?? error)
            }
        }
        return VaultError(.io, what, cause: error)
    }
}
