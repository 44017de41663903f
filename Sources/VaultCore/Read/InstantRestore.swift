import Foundation
import Glibc

/// An instant restore as this host keeps it: a point's disk being copied into a target (a
/// file or a block device) while the mount serves a writable image of the target at once.
///
/// Kept in this host's own state folder, never in the repository: the record names a file
/// this host writes, and a repository may be written by someone else.
public struct InstantRestoreRecord: Codable, Sendable, Equatable {
    public var id: String
    /// The repository's id and where this host finds it (`RepositoryLocation.hostName`):
    /// a mount serves only the restores of the repository it shows.
    public var repository: String
    public var location: String
    public var point: String
    public var server: String
    public var pointName: String
    public var disk: String
    /// The absolute path of the target, as the user gave it (a `/dev/disk/by-id/` name stays
    /// one), and what it was: a device's number, or a file's device and inode.
    public var target: String
    public var targetDevice: UInt64
    public var targetInode: UInt64
    public var size: Int64
    public var chunkSize: Int
    /// Whether the restore made the target file.
    public var newTarget: Bool
    public var createdAt: Date

    /// Chunk positions of the disk: one bit each in the fill bitmap.
    public var positions: Int { Int((size + Int64(chunkSize) - 1) / Int64(chunkSize)) }

    var bitmapBytes: Int { (positions + 7) / 8 }

    func length(of position: Int) -> Int {
        Int(min(Int64(chunkSize), size - Int64(position) * Int64(chunkSize)))
    }
}

/// How far an instant restore has come, as `status.json` and `vaultctl restore status` say.
public struct InstantRestoreStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// Filling, served by a mount.
        case filling
        /// Every range is in the target: `vaultctl restore finish` may end it.
        case complete
        /// No mount serves it now: the fill goes on when the repository is mounted.
        case waiting
        /// The fill stopped on an error (a damaged chunk, a full or failing target).
        case failed
    }

    public var id: String
    public var server: String
    public var point: String
    public var pointName: String
    public var disk: String
    public var target: String
    public var state: State
    public var size: Int64
    public var filledBytes: Int64
    public var percent: Double
    /// Bytes filled a second since the mount began serving it; nil when not filling.
    public var bytesPerSecond: Double?
    public var etaSeconds: Double?
    public var error: String?
    public var updatedAt: Date
}

/// The instant restores of this host: one folder each, `<id>/` with `restore.json` (the
/// record), `filled` (the fill bitmap: bit N set once chunk N of the disk is in the target
/// for good), `status.json` (written by the mount that serves it) and `open.lock` (held
/// shared by the mount while the image is open).
///
/// The folder is `$VAULT_RESTORE_DIR`, else `/var/lib/vaultfs/restores` for root and
/// `~/.local/state/vaultfs/restores` (below `$XDG_STATE_HOME` when set) for other users.
/// Folders and files are owner-only; one that another user owns or may write is refused.
public struct InstantRestores: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public static var standard: InstantRestores {
        let environment = ProcessInfo.processInfo.environment
        if let given = environment["VAULT_RESTORE_DIR"], given.hasPrefix("/") {
            return InstantRestores(directory: given)
        }
        return InstantRestores(directory: "\(RepositoryLocation.stateBase(environment: environment))/restores")
    }

    public func folder(_ id: String) -> String { "\(directory)/\(id)" }
    func recordPath(_ id: String) -> String { "\(folder(id))/restore.json" }
    func bitmapPath(_ id: String) -> String { "\(folder(id))/filled" }
    func statusPath(_ id: String) -> String { "\(folder(id))/status.json" }
    func openLockPath(_ id: String) -> String { "\(folder(id))/open.lock" }
    func servedLockPath(_ id: String) -> String { "\(folder(id))/served.lock" }

    /// Restore ids are 12 lowercase hex digits: nothing else is taken for one.
    static func isId(_ text: String) -> Bool {
        text.utf8.count == 12 && text.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// The restores of `repository` on this host, oldest first. A record that cannot be read
    /// is left out and named in `problems`.
    public func records(of repository: Repository) -> (records: [InstantRestoreRecord], problems: [String]) {
        do { try requireTrusted(directory, isDirectory: true, missingIsFine: true) } catch {
            return ([], ["\(error)"])
        }
        var found: [InstantRestoreRecord] = []
        var problems: [String] = []
        for name in Posix.listDirectory(directory).sorted() where Self.isId(name) {
            guard Posix.exists(recordPath(name)) else { continue }
            do {
                let record = try read(name)
                if record.repository == repository.config.id && record.location == repository.location.hostName {
                    found.append(record)
                }
            } catch {
                problems.append("restore \(name): \(error)")
            }
        }
        return (found.sorted { $0.createdAt < $1.createdAt }, problems)
    }

    /// The restore `id` (or the one id prefix) of `repository`.
    public func record(_ id: String, of repository: Repository) throws -> InstantRestoreRecord {
        let (records, problems) = records(of: repository)
        let matching = records.filter { $0.id.hasPrefix(id.lowercased()) }
        guard !id.isEmpty, matching.count == 1 else {
            if matching.count > 1 { throw VaultError.invalid("restore id '\(id)' is ambiguous; give more of it") }
            if let problem = problems.first(where: { $0.hasPrefix("restore \(id)") }) {
                throw VaultError(.corrupt, problem)
            }
            throw VaultError.notFound(
                "no instant restore '\(id)' of this repository on this host; 'vaultctl restore status' lists them")
        }
        return matching[0]
    }

    /// Reads a record, refusing a file another user owns or may write, or that says
    /// something no restore can be.
    func read(_ id: String) throws -> InstantRestoreRecord {
        let path = recordPath(id)
        try requireTrusted(folder(id), isDirectory: true)
        try requireTrusted(path, isDirectory: false)
        let bytes = try Posix.readFile(path, limit: 64 << 10)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let record: InstantRestoreRecord
        do { record = try decoder.decode(InstantRestoreRecord.self, from: Data(bytes)) } catch {
            throw VaultError(.corrupt, "\(path) cannot be read: \(error)")
        }
        guard record.id == id, record.target.hasPrefix("/"), record.size > 0, record.size <= 1 << 50,
            record.chunkSize >= 64 << 10, record.chunkSize <= 4 << 20, (try? Names.validateDisk(record.disk)) != nil
        else { throw VaultError(.corrupt, "\(path) does not describe a restore") }
        return record
    }

    /// Keeps a new restore: its folder, record, empty bitmap and open lock.
    func create(_ record: InstantRestoreRecord) throws {
        let parent = (directory as NSString).deletingLastPathComponent
        if !Posix.exists(parent) { try Posix.makeDirectories(parent, mode: 0o700) }
        try Posix.makeDirectory(directory, mode: 0o700)
        try requireTrusted(directory, isDirectory: true)
        try Posix.makeDirectory(folder(record.id), mode: 0o700)
        try Posix.writeFileAtomically(
            bitmapPath(record.id), [UInt8](repeating: 0, count: record.bitmapBytes), mode: 0o600)
        close(try Posix.createFile(openLockPath(record.id), mode: 0o600))
        close(try Posix.createFile(servedLockPath(record.id), mode: 0o600))
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // The record last: a folder without one is not a restore yet.
        try Posix.writeFileAtomically(recordPath(record.id), Array(try encoder.encode(record)), mode: 0o600)
    }

    /// Chunk positions the bitmap on disk says are in the target for good.
    func durablePositions(_ record: InstantRestoreRecord) -> (count: Int, bytes: Int64) {
        guard let bitmap = try? Posix.readFile(bitmapPath(record.id), limit: record.bitmapBytes),
            bitmap.count == record.bitmapBytes
        else { return (0, 0) }
        var count = 0
        var bytes: Int64 = 0
        for position in 0..<record.positions where bitmap[position >> 3] & (1 << (position & 7)) != 0 {
            count += 1
            bytes += Int64(record.length(of: position))
        }
        return (count, bytes)
    }

    /// How far `record` has come: what its mount last wrote while it still serves it, else
    /// what the bitmap says.
    public func status(of record: InstantRestoreRecord, now: Date = Date()) -> InstantRestoreStatus {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let served = isServed(record.id)
        if served, let bytes = try? Posix.readFile(statusPath(record.id), limit: 64 << 10),
            let written = try? decoder.decode(InstantRestoreStatus.self, from: Data(bytes)),
            written.id == record.id
        {
            return written
        }
        let durable = durablePositions(record)
        let state: InstantRestoreStatus.State =
            durable.count == record.positions ? .complete : served ? .filling : .waiting
        return InstantRestoreStatus(
            id: record.id, server: record.server, point: record.point, pointName: record.pointName,
            disk: record.disk, target: record.target, state: state, size: record.size,
            filledBytes: durable.bytes, percent: Double(durable.bytes) * 100 / Double(record.size),
            bytesPerSecond: nil, etaSeconds: nil, error: nil, updatedAt: now)
    }

    /// Whether a mount serves `id` now: the serving mount holds its lock file exclusively.
    func isServed(_ id: String) -> Bool { lockIsHeld(servedLockPath(id)) }

    /// Whether the image of `id` is open in a mount.
    public func isImageOpen(_ id: String) -> Bool { lockIsHeld(openLockPath(id)) }

    private func lockIsHeld(_ path: String) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }

    /// Ends restore `id`: refused while its image is open, and (unless `cancel`) until every
    /// range is in the target. The target stays; the point's protection from deletion goes.
    /// Waits (at most `wait` seconds) until a mount that served it lets the target go. The
    /// restore history says it ended once its record is gone; returns the bytes filled.
    @discardableResult
    public func end(
        _ record: InstantRestoreRecord, cancel: Bool, repository: Repository, wait: TimeInterval = 15
    ) throws -> Int64 {
        let id = record.id
        let fd = try Posix.open(openLockPath(id), O_RDONLY | O_NOFOLLOW, what: "cannot use the restore's lock")
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw VaultError(
                .busy,
                "the image of restore \(id) is open (a virtual machine, a loop device or a program uses it): stop it first; nothing was changed"
            )
        }
        let durable = durablePositions(record)
        if !cancel {
            guard durable.count == record.positions else {
                let percent = String(format: "%.1f", Double(durable.bytes) * 100 / Double(record.size))
                throw VaultError(
                    .busy,
                    "restore \(id) is \(percent)% filled: wait until it is complete ('vaultctl restore status \(id)'), or cancel it; nothing was changed"
                )
            }
        }
        // The record first: a mount then opens the image no more, and lets the target go.
        if unlink(recordPath(id)) != 0 { throw Posix.error("cannot remove", recordPath(id)) }
        repository.releaseRestorePin(id)
        self.record(RestoreHistoryEntry(record, outcome: cancel ? .cancelled : .finished, filledBytes: durable.bytes))
        let deadline = Date().addingTimeInterval(wait)
        while isServed(id) && Date() < deadline { usleep(50_000) }
        let stillServed = isServed(id)
        Posix.removeTree(folder(id))
        if stillServed {
            throw VaultError(
                .busy,
                "restore \(id) ended, but the mount that served it did not let \(record.target) go within \(Int(wait)) s; unmount it before using the target"
            )
        }
        return durable.bytes
    }

    /// Refuses what is not an owner-only plain file (or folder): a record names a file this
    /// host writes, so one another user could write could point a restore at any file.
    func requireTrusted(_ path: String, isDirectory: Bool, missingIsFine: Bool = false) throws {
        try Posix.requireOwnerOnly(path, isDirectory: isDirectory, missingIsFine: missingIsFine)
    }
}

extension Repository {
    /// Sets up an instant restore of `point`'s disk into `path` (a file, made sparse when
    /// absent, or a block device) and returns its record; a mount of this repository then
    /// serves its image and fills it. Everything that can refuse comes first: a target in use,
    /// too small, or already the target of another restore.
    public func startInstantRestore(
        point: Point, disk: String, to path: String, restores: InstantRestores = .standard
    ) throws -> InstantRestoreRecord {
        let opened = try openImage(point: point.id, disk: disk)
        let image = opened.image
        let absolute = Posix.absolutePath(path)
        let target = try RestoreTarget.open(absolute)
        let identity: (device: UInt64, inode: UInt64)
        do {
            identity = try target.identity()
            if let other = restores.records(of: self).records.first(where: {
                $0.targetDevice == identity.device && $0.targetInode == identity.inode
            }) {
                throw VaultError(
                    .busy, "restore \(other.id) already fills \(other.target); finish or cancel it first")
            }
        } catch {
            target.discard()
            throw error
        }
        var pinned = false
        var id = ""
        do {
            try target.prepare(size: image.size)
            id = String(format: "%06x%06x", UInt32.random(in: 0..<(1 << 24)), UInt32.random(in: 0..<(1 << 24)))
            let record = InstantRestoreRecord(
                id: id, repository: config.id, location: location.hostName, point: point.id,
                server: point.serverName, pointName: point.name, disk: disk,
                target: absolute, targetDevice: identity.device, targetInode: identity.inode, size: image.size,
                chunkSize: image.chunkSize,
                newTarget: target.isNew, createdAt: Date())
            if readOnlyReason == nil {
                try takeRestorePin(id, on: try catalog.chain(endingAt: point.id).map(\.id))
                pinned = true
            }
            try restores.create(record)
            try target.finish()
            return record
        } catch {
            if pinned { releaseRestorePin(id) }
            if !id.isEmpty { Posix.removeTree(restores.folder(id)) }
            target.discard()
            throw error
        }
    }
}

/// An open image of an instant restore: holds the restore's open lock shared until it is
/// released, so `vaultctl restore finish` and `cancel` refuse while anything has it open.
public final class RestoreImageClaim: Sendable {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Refused when the restore has ended (or is ending) meanwhile.
    public static func take(_ id: String, in restores: InstantRestores) throws -> RestoreImageClaim {
        let fd = try Posix.open(restores.openLockPath(id), O_RDONLY | O_NOFOLLOW, what: "cannot use")
        guard flock(fd, LOCK_SH | LOCK_NB) == 0, Posix.exists(restores.recordPath(id)) else {
            close(fd)
            throw VaultError(.notFound, "restore \(id) has ended")
        }
        return RestoreImageClaim(fd: fd)
    }
}
