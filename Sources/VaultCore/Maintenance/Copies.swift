import Foundation

/// One copy a copy policy ran, as `vaultctl history --copies` shows it: what went where, what
/// the copy's retention deleted there, and why it failed when it did.
public struct CopyHistoryEntry: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable { case done, failed }

    public var time: Date
    public var vault: String
    /// The source location; "-" when it could not be found.
    public var from: String
    public var to: String
    public var outcome: Outcome
    /// Points copied, and points the target held already.
    public var points = 0
    public var pointsPresent = 0
    public var chunks = 0
    public var chunkBytes: Int64 = 0
    /// Points the copy's own retention deleted in the target.
    public var deleted = 0
    public var seconds: Double = 0
    public var error: String?
}

/// The copy policies of a locations file at work: each vault's new points copied as stored
/// (sealed when encrypted) into its target location, the target's own retention applied
/// there, and each attempt kept in this host's copy history. A copy never deletes from the
/// source, and one that fails (a target away, say) leaves the next to catch up.
public struct Copies: Sendable {
    public let locations: Locations
    let log: HistoryLog<CopyHistoryEntry>

    public init(locations: Locations, directory: String) {
        self.locations = locations
        log = HistoryLog(directory: directory)
    }

    /// The history lives in `$VAULT_COPY_DIR`, else in `copies` below this host's state folder
    /// (`/var/lib/vaultfs` for root), owner-only.
    public static func standard(_ locations: Locations) -> Copies {
        let environment = ProcessInfo.processInfo.environment
        if let given = environment["VAULT_COPY_DIR"], given.hasPrefix("/") {
            return Copies(locations: locations, directory: given)
        }
        return Copies(
            locations: locations, directory: "\(RepositoryLocation.stateBase(environment: environment))/copies")
    }

    /// This host's copies, oldest first.
    public func history() throws -> [CopyHistoryEntry] { try log.entries() }

    /// How long after a failed copy it is tried again (its interval when that is shorter).
    public static let retrySeconds = 3600

    /// Whether `policy`'s copy is due at `now`: it never ran, or its last attempt is an
    /// interval old (an hour when it failed), less a minute so a timer that fires at the same
    /// minute each day is not a day late, or the clock went back past it.
    public func isDue(_ policy: CopyPolicy, now: Date) throws -> Bool {
        guard let last = try history().last(where: { $0.vault == policy.vault && $0.to == policy.to }) else {
            return true
        }
        let age = now.timeIntervalSince(last.time)
        let wait = last.outcome == .failed ? min(policy.everySeconds, Self.retrySeconds) : policy.everySeconds
        return age < 0 || age >= Double(wait - 60)
    }

    /// The lock one copy into `target` holds on this host; nil when another copy holds it.
    private func lock(_ target: String) throws -> FileLock? {
        if !Posix.exists(log.directory) { try Posix.makeDirectories(log.directory, mode: 0o700) }
        return try FileLock.tryLock("\(log.directory)/\(target).lock")
    }

    /// Whether a copy into `policy`'s target is running on this host now.
    public func isRunning(_ policy: CopyPolicy) -> Bool {
        do {
            return try lock(policy.to) == nil
        } catch {
            return false // the copy itself will say why its lock cannot be taken
        }
    }

    /// Runs `policy`'s copy now and records it; a failure is in the entry, never thrown.
    /// `historyProblem` says why the history could not be written, when it could not. Another
    /// copy into the same target running on this host fails this one, which is not recorded:
    /// the history tells of that one.
    public func run(
        _ policy: CopyPolicy, unlock: Unlock = .none, now: Date = Date(),
        progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }
    ) -> (entry: CopyHistoryEntry, historyProblem: String?) {
        let started = Date()
        var entry = CopyHistoryEntry(time: now, vault: policy.vault, from: "-", to: policy.to, outcome: .failed)
        // One copy into a target at a time on this host (the scheduler and 'vaultctl copy').
        let held: FileLock
        do {
            guard let lock = try lock(policy.to) else {
                entry.error = "another copy into location \(policy.to) is running on this host"
                return (entry, nil)
            }
            held = lock
        } catch {
            entry.error = "\(error)"
            return (entry, log.append(entry, what: "copy"))
        }
        defer { withExtendedLifetime(held) {} }
        do {
            guard let from = try locations.holding(.vault(policy.vault), unlock: unlock) else {
                throw VaultError.notFound("no vault named '\(policy.vault)' in any location of \(locations.path)")
            }
            guard from.name != policy.to else {
                throw VaultError.notFound(
                    "vault \(policy.vault) is only in location \(policy.to), its copy; its own location does not hold it"
                )
            }
            entry.from = from.name
            let sourceUnlock = from.unlock(else: unlock)
            let source = try Repository(location: try from.repositoryLocation(), unlock: sourceUnlock)
            let target = try locations.named(policy.to).repositoryLocation()
            let mirror: Repository
            do {
                // Never made here: an empty folder or a missing bucket is a target away (a
                // disk not mounted), and `location add --mirror-of` made the mirror.
                mirror = try Sync.openMirror(of: source, at: target, unlock: sourceUnlock, create: false)
            } catch let error as VaultError {
                throw VaultError(error.code, "location \(policy.to) cannot be opened: \(error.message)")
            }
            let report = try Sync.run(
                from: source, into: mirror, vault: policy.vault,
                select: try Self.selection(policy, source: source, mirror: mirror), progress: progress)
            entry.points = report.points
            entry.pointsPresent = report.pointsPresent
            entry.chunks = report.chunks
            entry.chunkBytes = report.chunkBytes
            if try mirror.catalog.vaults().contains(where: { $0.name == policy.vault }) {
                let removal = try Retention(repository: mirror).apply(
                    vault: policy.vault, keepFulls: policy.keepFulls, now: now)
                entry.deleted = removal.points.count
            }
            entry.outcome = .done
        } catch {
            entry.error = "\(error)"
        }
        entry.seconds = Date().timeIntervalSince(started)
        return (entry, log.append(entry, what: "copy"))
    }

    /// What a copy takes: every manual point, and the policy chains of the newest
    /// `keepFulls` fulls of each server (older ones its retention would delete at once),
    /// never a point the target's retention deleted already (that would copy it again).
    static func selection(_ policy: CopyPolicy, source: Repository, mirror: Repository) throws -> (PointManifest) ->
        Bool
    {
        let live = try source.catalog.allPointManifests().filter {
            $0.isLive && $0.point.vaultName == policy.vault
        }
        // Retention deletes whole chains, and so does the target's: a chain with a point
        // deleted there and live here is not copied again, parents included.
        let liveIds = Set(live.map(\.point.id))
        let deletedThere = Set(
            try mirror.catalog.allPointManifests().filter {
                $0.point.deletion != .none && liveIds.contains($0.point.id)
            }
            .map(\.point.chainId))
        var fulls: [String: [Point]] = [:]
        for manifest in live where manifest.point.schedule == .policy && manifest.point.kind == .full {
            fulls[manifest.point.serverName, default: []].append(manifest.point)
        }
        var kept = Set<String>()
        for points in fulls.values {
            let newest = points.sorted { $0.startedAt > $1.startedAt }.prefix(policy.keepFulls)
            kept.formUnion(newest.map { $0.id })
        }
        return { manifest in
            !deletedThere.contains(manifest.point.chainId)
                && (manifest.point.schedule != .policy || kept.contains(manifest.point.chainId))
        }
    }
}
