import Foundation
import Logging
import Synchronization

/// Runs policy backups when their slot is due, then applies retention.
public final class Scheduler: Sendable {
    public let repository: Repository
    private let logger = Logger(label: "vaultfs.scheduler")
    private let running = Mutex<BackupJob?>(nil)
    private let stopped = Atomic<Bool>(false)
    /// Where this host's servers are set up: the scheduler backs up only those.
    private let host: HostServers
    /// Servers and slots already reported as not set up, so a running scheduler says it once.
    private let reported = Mutex<Set<String>>([])
    /// Whether each run is a process of its own (`--once` from a timer each minute): it cannot
    /// remember what it said, so a server left to other hosts is said in a slot's first minute
    /// only, not once a minute until the next slot.
    private let runsEachMinute: Bool

    public init(repository: Repository, host: HostServers = .standard, runsEachMinute: Bool = false) {
        self.repository = repository
        self.host = host
        self.runsEachMinute = runsEachMinute
    }

    /// Stops the scheduler: the running backup is cancelled (it ends as failed) and no other
    /// starts. Safe to call from a signal handler's queue.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        running.withLock { $0?.cancel() }
    }

    public var isStopped: Bool { stopped.load(ordering: .relaxed) }

    /// One line per backup attempted or skipped, for the command's output.
    public struct Outcome: Sendable {
        public var server: String
        public var point: Point?
        public var message: String
        /// Whether something due did not happen: a backup that failed or could not start, or
        /// retention that failed. A slot skipped because another process runs it is no failure.
        public var failed: Bool

        public init(server: String, point: Point?, message: String, failed: Bool = false) {
            self.server = server
            self.point = point
            self.message = message
            self.failed = failed
        }
    }

    /// Runs every slot due at `now` once: a missed slot runs once, never several times.
    /// A server or vault that fails is reported in the outcomes and the others go on.
    public func runDue(now: Date, progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }) throws -> [Outcome]
    {
        var outcomes: [Outcome] = []
        for vault in try repository.catalog.vaults() {
            guard let policy = vault.policy, let slot = policy.latestSlot(atOrBefore: now) else { continue }
            for server in try repository.catalog.servers(inVault: vault.id) where !isStopped {
                do {
                    // A server set up on another host is that host's to back up. A host with no
                    // servers set up at all ran an older vaultctl: that is a failure to say.
                    // Either is said once a slot: a running scheduler does not repeat it every 30 s.
                    if try repository.hostServer(server.name, host: host) == nil {
                        let history = try repository.catalog.allPoints(server: server.id)
                        if history.contains(where: { $0.schedule == .policy && ($0.slot ?? .distantPast) >= slot }) {
                            continue
                        }
                        guard reported.withLock({ $0.insert("\(server.name) \(slot.timeIntervalSince1970)").inserted })
                        else { continue }
                        // A file of this host for another repository is that repository's
                        // server of the same name; one that names no repository was written
                        // by an older vaultctl and must be adopted again: a failure to say.
                        let file = try host.server(server.name)
                        let unadopted = file != nil && (file?.repository == nil || file?.location == nil)
                        if unadopted || !host.isInUse {
                            outcomes.append(
                                Outcome(
                                    server: server.name, point: nil,
                                    message:
                                        "failed: \(try repository.notSetUp(server.name, host: host).message) (on the host that holds its disks)",
                                    failed: true))
                        } else if !runsEachMinute || now.timeIntervalSince(slot) < 60 {
                            let line =
                                file == nil
                                ? "skipped: not set up on this host (\(host.path(server: server.name))); left to the hosts it is set up on"
                                : "skipped: set up on this host for another repository (\(host.path(server: server.name)))"
                            outcomes.append(Outcome(server: server.name, point: nil, message: line))
                        }
                        continue
                    }
                    // Chains stay inside one vault: a server moved here starts with a full.
                    let history = try repository.catalog.allPoints(server: server.id)
                        .filter { $0.schedule == .policy && $0.vaultId == vault.id }
                    if history.contains(where: { ($0.slot ?? .distantPast) >= slot }) { continue }
                    outcomes.append(
                        runSlot(slot, server: server, policy: policy, history: history, now: now, progress: progress))
                } catch {
                    outcomes.append(Outcome(server: server.name, point: nil, message: "error: \(error)", failed: true))
                }
            }
            do {
                let removal = try Retention(repository: repository).apply(vault: vault.name, now: now)
                outcomes += removal.points.map {
                    Outcome(server: $0.serverName, point: $0, message: "deleted by retention")
                }
                // Retention did its work; the space comes back at the next collection.
                if let problem = removal.collectionProblem {
                    outcomes.append(Outcome(server: "-", point: nil, message: problem, failed: false))
                }
            } catch {
                outcomes.append(
                    Outcome(
                        server: "-", point: nil, message: "retention of vault \(vault.name) failed: \(error)",
                        failed: true))
            }
        }
        return outcomes
    }

    /// The servers set up here whose latest slot at `now` ended in failed attempts only. A
    /// failed slot is not run again, so without this a timer that runs `--once` each minute
    /// would say the failure once and then succeed until the next slot.
    public func failedSlots(now: Date) throws -> [Outcome] {
        var outcomes: [Outcome] = []
        for vault in try repository.catalog.vaults() {
            guard let policy = vault.policy, let slot = policy.latestSlot(atOrBefore: now) else { continue }
            for server in try repository.catalog.servers(inVault: vault.id)
            where try repository.hostServer(server.name, host: host) != nil {
                let attempts = try repository.catalog.allPoints(server: server.id)
                    .filter { $0.schedule == .policy && ($0.slot ?? .distantPast) >= slot }
                guard let last = attempts.max(by: { $0.startedAt < $1.startedAt }),
                    !attempts.contains(where: { $0.status != .failed })
                else { continue }
                outcomes.append(
                    Outcome(
                        server: server.name, point: last,
                        message:
                            "failed at its slot \(Units.formatTime(slot)) (\(last.error ?? "no reason recorded")); it runs again at the next slot, or now with 'vaultctl backup \(server.name)'",
                        failed: true))
            }
        }
        return outcomes
    }

    private func runSlot(
        _ slot: Date, server: Server, policy: Policy, history: [Point], now: Date,
        progress: @escaping @Sendable (BackupProgress) -> Void
    ) -> Outcome {
        let next = ChainRule.next(policyPoints: history, incrementals: policy.incrementals)
        // A slot run again after a cancelled or cut-off attempt keeps that attempt (history
        // shows it) and takes the next free name: 20301231T160000Z-2, -3, ...
        let base = Units.compactUTC(slot)
        let taken = Set(
            ((try? repository.catalog.points(server: server.id, includeSoftDeleted: true)) ?? []).map(\.name))
        let name = taken.contains(base) ? (2...).lazy.map { "\(base)-\($0)" }.first { !taken.contains($0) }! : base
        let plan = BackupPlan(
            server: server.name, name: name, description: "", tags: [],
            disks: nil, schedule: .policy, kind: next.kind, parentId: next.parent, slot: slot)
        do {
            let job = try repository.prepareBackup(plan, now: now)
            running.withLock { $0 = job }
            if isStopped { job.cancel() }
            let point = job.run(clock: now, progress: progress)
            running.withLock { $0 = nil }
            let made = point.status == .active
            return Outcome(
                server: server.name, point: point, message: made ? "made" : "failed: \(point.error ?? "")",
                failed: !made)
        } catch let error as VaultError where error.code == .busy {
            return Outcome(server: server.name, point: nil, message: "skipped: \(error.message)")
        } catch {
            // A slot that cannot even start (a missing disk, say) is recorded as a failed point,
            // so the history shows it and the slot is not retried forever.
            let reason = (error as? VaultError)?.description ?? "\(error)"
            var point: Point?
            do { point = try repository.recordFailedAttempt(plan, server: server, error: reason, now: now) } catch {
                logger.error("the failed attempt of \(server.name) could not be recorded in the history: \(error)")
            }
            return Outcome(server: server.name, point: point, message: "failed: \(reason)", failed: true)
        }
    }
}

extension Repository {
    /// Records a backup attempt that failed before it could start, so history shows why.
    public func recordFailedAttempt(_ plan: BackupPlan, server: Server, error: String, now: Date) throws -> Point {
        let vault = try server.vaultId.flatMap { try catalog.vault(id: $0) }
        let id = UUID().uuidString.lowercased()
        let point = Point(
            id: id, serverId: server.id, serverName: server.name, vaultId: vault?.id, vaultName: vault?.name ?? "",
            name: plan.name, description: plan.description, kind: plan.kind, schedule: plan.schedule,
            status: .failed, error: error, parentId: nil, chainId: id, slot: plan.slot, startedAt: now,
            finishedAt: now, deletion: .none, deletedAt: nil, progressDone: 0, progressTotal: 0)
        try register(point, tags: [])
        return point
    }
}
