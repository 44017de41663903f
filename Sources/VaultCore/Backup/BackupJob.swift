import Foundation
import Logging
import Synchronization

/// A backup registered in the catalog as `creating`, holding its server's lock and its open
/// disks until `run` ends.
public final class BackupJob: Sendable {
    public let point: Point
    /// Set when the server was in no vault and this backup put it in one (seed 000): the
    /// scheduler backs it up by that vault's policy from now on, which its caller should say.
    public let enrolment: Enrolment?

    /// A vault a server was put in by its first backup.
    public struct Enrolment: Sendable {
        public let vault: String
        /// Whether the vault was made for it.
        public let created: Bool
        public let policy: Policy?

        /// One line for the user.
        public var description: String {
            let rule =
                policy.map {
                    "policy every \($0.everyHours)h from \($0.startText), \($0.incrementals) incrementals, keeping \($0.keepFulls) fulls"
                } ?? "no policy"
            return
                "was in no vault: it is now in vault '\(vault)'\(created ? " (made now)" : "") with \(rule), so the scheduler backs it up from now on; 'vaultctl server move' puts it in another"
        }
    }
    private let repository: Repository
    private let server: Server
    /// This host's hooks of the server, read when the backup was prepared.
    private let hooks: Hooks
    private let sources: [any DiskOrigin]
    /// The server's lock, and the shared backup lock that keeps garbage collection out while
    /// chunks are unmapped; `run` lets them go (the collection lock first, when the disk is
    /// full, so that the collection can give the space back).
    private let locks: Mutex<(server: StoreLock?, collection: FileLock?)>
    private let stop = Atomic<Bool>(false)
    private let logger = Logger(label: "vaultfs.backup")

    init(
        point: Point, repository: Repository, server: Server, hooks: Hooks, sources: [any DiskOrigin],
        serverLock: StoreLock,
        collectionLock: FileLock, enrolment: Enrolment?
    ) {
        self.enrolment = enrolment
        self.point = point
        self.repository = repository
        self.server = server
        self.hooks = hooks
        self.sources = sources
        locks = Mutex((serverLock, collectionLock))
    }

    /// Asks a running backup to stop; it then ends as failed.
    public func cancel() { stop.store(true, ordering: .relaxed) }

    /// Reads the disks, writes chunks and maps, and commits the point as active, or leaves
    /// it failed with the reason. Returns the point as it ended.
    @discardableResult
    public func run(clock: Date? = nil, progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }) -> Point {
        let started = Date()
        let catalog = repository.catalog
        let id = point.id
        let lastStored = Mutex<Double>(0)
        let meter = ProgressMeter(label: "\(point.serverName)/\(point.name)") { snapshot in
            progress(snapshot)
            let due = lastStored.withLock { last in
                guard snapshot.elapsed - last >= 1 else { return false }
                last = snapshot.elapsed
                return true
            }
            if due { catalog.updateProgress(point: id, done: snapshot.done, total: snapshot.total) }
        }
        defer {
            locks.withLock { locks in
                locks.collection = nil
                locks.server = nil
            }
        }
        do {
            let read = try captureAndBackUp(meter: meter)
            let (records, fingerprints) = (read.records, read.fingerprints)
            meter.finish()
            let finished = (clock ?? started).addingTimeInterval(Date().timeIntervalSince(started))
            // The manifest says active before the catalog does, and both after every chunk
            // and map is on stable storage: a crash anywhere leaves a point that is either
            // whole or not shown.
            try locks.withLock { $0.server }?.requireHeld(server.name)
            guard var manifest = try catalog.manifest(ofPoint: id) else {
                throw VaultError(.io, "point \(id) left the catalog")
            }
            manifest.point.status = .active
            manifest.point.finishedAt = finished
            manifest.point.progressDone = manifest.point.progressTotal
            manifest.disks = records
            manifest.point.frozenMs = read.frozenMs
            manifest.point.warning = read.warning
            try repository.manifests.write(manifest)
            FaultInjection.reached("manifest-written")
            try repository.syncData()
            try catalog.finishPoint(id, disks: records, at: finished, frozenMs: read.frozenMs, warning: read.warning)
            FaultInjection.reached("committed")
            keep(fingerprints)
        } catch {
            var reason = (error as? VaultError)?.description ?? "\(error)"
            logger.error("backup \(point.name) of \(server.name) failed: \(reason)")
            repository.tidy("the maps of failed point \(id) are left; the next 'vaultctl gc' removes them") {
                try repository.maps.remove(point: id)
            }
            for source in sources { source.discard(pointId: id) }
            if (error as? VaultError)?.code == .noSpace {
                // Give back what this backup wrote, so the catalog can record the failure and
                // the next backup has room; points already stored are untouched.
                reason = "the repository's disk is full: \(reason)"
                // The server stays locked, so the collection does not take this point for one
                // whose process died; it is failed below with the real reason.
                locks.withLock { $0.collection = nil }
                if let problem = repository.collectGarbage(after: "a backup that filled the disk") {
                    reason += "; \(problem)"
                }
            }
            do {
                try repository.failPoint(
                    id, error: reason, at: (clock ?? started).addingTimeInterval(Date().timeIntervalSince(started)),
                    retrySlot: (error as? VaultError)?.code == .cancelled)
            } catch {
                // The point stays "being made"; the next process to open the repository finds
                // its maker gone and records it as interrupted.
                logger.error("recording backup \(point.name) of \(server.name) as failed: \(error)")
            }
        }
        return (try? catalog.point(id: id)) ?? point
    }

    /// Keeps what the disks' backups read for the server's next incremental, and drops what
    /// no backup can use any more (fingerprints and snapshots); only ever a loss of speed,
    /// or snapshots left for `vaultctl gc`, when it fails.
    private func keep(_ fingerprints: [Fingerprints]) {
        let store = repository.fingerprints
        do {
            for prints in fingerprints { try store.save(prints, server: server.id) }
            let points = try repository.catalog.points(server: server.id)
            store.prune(server: server.id, keeping: FingerprintStore.parentsToKeep(points))
            let kept = KeptPoints(try repository.catalog.allPoints(server: server.id))
            for source in sources {
                for problem in source.tidy(kept) {
                    logger.warning("\(problem); 'vaultctl gc' tries again")
                }
            }
        } catch {
            logger.warning("cannot keep the fingerprints of \(point.name) for the next incremental: \(error)")
        }
    }

    /// What reading a point's disks gave.
    private struct Read {
        var records: [PointDisk]
        var fingerprints: [Fingerprints]
        var frozenMs: Int64?
        var warning: String?
    }

    /// Captures every disk inside the freeze window and backs them up: after the thaw when
    /// every disk is captured at once (snapshots), inside the window otherwise.
    private func captureAndBackUp(meter: ProgressMeter) throws -> Read {
        let clock = ContinuousClock()
        let start = clock.now
        func elapsed() -> Int64 {
            let d = start.duration(to: clock.now).components
            return d.seconds * 1000 + d.attoseconds / 1_000_000_000_000_000
        }
        let measured = !hooks.isEmpty || sources.contains { $0.capturesInstantly }
        if sources.allSatisfy(\.capturesInstantly) {
            let captured = try withFreezeAndThaw { try sources.map { try $0.capture(pointId: point.id) } }
            let frozen = elapsed()
            var read = try backUpDisks(captured, meter: meter)
            read.frozenMs = measured ? frozen : nil
            return read
        }
        var read = try withFreezeAndThaw {
            try backUpDisks(try sources.map { try $0.capture(pointId: point.id) }, meter: meter)
        }
        read.frozenMs = measured ? elapsed() : nil
        return read
    }

    private func backUpDisks(_ sources: [any CapturedDisk], meter: ProgressMeter) throws -> Read {
        let chunkSize = repository.config.chunkSize
        let parentDisks =
            try point.parentId.map { id in
                Dictionary(
                    try repository.catalog.pointDisks(id).map { ($0.disk, $0.size) }, uniquingKeysWith: { a, _ in a })
            } ?? [:]
        let plans = try sources.map { source in
            try source.readPlan(
                chunkSize: chunkSize,
                parent: point.parentId.flatMap { id in parentDisks[source.name].map { (id: id, size: $0) } })
        }
        let warnings = plans.compactMap(\.note)
        for warning in warnings { logger.warning("\(point.serverName)/\(point.name): \(warning)") }
        for (source, plan) in zip(sources, plans) {
            meter.addTotal(
                plan.positions.reduce(0) {
                    $0 + Int64(min(Int64(chunkSize), source.size - Int64($1) * Int64(chunkSize)))
                })
        }
        var records: [PointDisk] = []
        var fingerprints: [Fingerprints] = []
        for (source, plan) in zip(sources, plans) {
            meter.setLabel("\(point.serverName)/\(point.name) disk \(source.name)")
            var parent: FlatImage?
            var known: Fingerprints?
            if let parentId = point.parentId, parentDisks[source.name] != nil {
                parent = try repository.flatten(point: parentId, disk: source.name)
                known = repository.fingerprints.load(
                    server: server.id, point: parentId, disk: source.name, chunkSize: chunkSize)
            }
            let result = try DiskBackup(
                source: source, store: repository.chunks, chunkSize: chunkSize,
                compressionLevel: repository.config.compressionLevel, parent: parent, known: known,
                plan: plan, meter: meter,
                cancelled: { [self] in stop.load(ordering: .relaxed) || locks.withLock { $0.server }?.isLost == true }
            )
            .run(pointId: point.id)
            try repository.maps.write(result.map, point: point.id, disk: source.name)
            FaultInjection.reached("map-written")
            records.append(result.record)
            fingerprints.append(result.fingerprints)
        }
        return Read(
            records: records, fingerprints: fingerprints,
            warning: warnings.isEmpty ? nil : warnings.joined(separator: "; "))
    }

    /// Runs the server's freeze command before `body` and its thaw command after, even when
    /// `body` fails. A failing hook fails the backup.
    private func withFreezeAndThaw<T>(_ body: () throws -> T) throws -> T {
        if let freeze = hooks.freeze {
            try runHook(freeze, what: "freeze")
        }
        let result: Result<T, any Error> = Result { try body() }
        if let thaw = hooks.thaw {
            try runHook(thaw, what: "thaw")
        }
        return try result.get()
    }

    private func runHook(_ command: String, what: String) throws {
        var environment = ProcessInfo.processInfo.environment
        environment["VAULT_SERVER"] = server.name
        environment["VAULT_POINT"] = point.name
        environment["VAULT_POINT_ID"] = point.id
        let status: Int32
        do {
            status = try System.runShell(command, environment: environment)
        } catch {
            throw VaultError(.io, "cannot run the \(what) command of server '\(server.name)'", cause: error)
        }
        guard status == 0 else {
            throw VaultError(
                .io, "the \(what) command of server '\(server.name)' failed with exit status \(status)")
        }
    }
}
