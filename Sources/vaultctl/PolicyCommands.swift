import ArgumentParser
import Foundation
import Synchronization
import VaultCore

/// `--start HH:MM --every Nh --incrementals K --keep-fulls N`.
struct PolicyOptions: ParsableArguments {
    @Option(help: "Launch time, HH:MM (local time).") var start: String?
    @Option(help: "Interval between backups in whole hours, e.g. 4h, 24h or 1d.") var every: String?
    @Option(help: "Incremental points between two fulls.") var incrementals: Int?
    @Option(help: "Number of fulls (chains) to keep.") var keepFulls: Int?

    /// The policy given, nil when no option was given; all four are needed together.
    func policy(now: Date) throws -> Policy? {
        if start == nil && every == nil && incrementals == nil && keepFulls == nil { return nil }
        guard let start, let every, let incrementals, let keepFulls else {
            throw VaultError(
                .invalidArgument, "a policy needs all of --start, --every, --incrementals and --keep-fulls")
        }
        let parts = start.split(separator: ":")
        guard parts.count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]),
            (0..<24).contains(hour), (0..<60).contains(minute)
        else {
            throw VaultError(.invalidArgument, "bad --start '\(start)': use HH:MM")
        }
        // The duration grammar of every other option (`1d`, `4h`, `1w`); a bare number is
        // hours, as before.
        let seconds = Int(every).map { TimeInterval($0 * 3600) } ?? Units.parseDuration(every)
        guard let seconds, seconds.truncatingRemainder(dividingBy: 3600) == 0, seconds < TimeInterval(Int32.max) else {
            throw VaultError(
                .invalidArgument, "bad --every '\(every)': use a whole number of hours, such as 4h, 24h or 1d")
        }
        let hours = Int(seconds / 3600)
        // The ranges are the core's: the same rule holds for the catalog and for manifests.
        return try Policy(
            startMinute: hour * 60 + minute, everyHours: hours, incrementals: incrementals,
            keepFulls: keepFulls, since: now)
    }
}

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Set or show a vault's backup policy.",
        subcommands: [Set.self, Show.self, Clear.self])

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a vault's policy.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The vault.") var vault: String
        @OptionGroup var options: PolicyOptions
        @Option(help: "Take the policy as set at this time (for testing schedules).") var now: String?

        func run() throws {
            let clock = try parseClock(now)
            guard let policy = try options.policy(now: clock) else {
                throw VaultError(.invalidArgument, "give --start, --every, --incrementals and --keep-fulls")
            }
            try repository.open(.vault(vault)).setPolicy(policy, vault: vault)
            print("vault \(vault): \(policyText(policy))")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a vault's policy.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The vault.") var vault: String
        @Flag var json = false

        func run() throws {
            let found = try repository.open(.vault(vault)).catalog.vault(named: vault)
            if json { return printJSON(PolicyView(found)) }
            print("vault \(vault): \(policyText(found.policy))")
            if let policy = found.policy { print("next slot: \(shownTime(policy.nextSlot(after: Date())))") }
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a vault's policy (manual backups only).")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The vault.") var vault: String

        func run() throws {
            try repository.open(.vault(vault)).setPolicy(nil, vault: vault)
            print("vault \(vault): no policy")
        }
    }
}

func parseClock(_ text: String?) throws -> Date {
    guard let text else { return Date() }
    guard let date = Units.parseTime(text) else {
        throw VaultError(.invalidArgument, "bad time '\(text)': use YYYY-MM-DDTHH:MM[:SS][Z]")
    }
    return date
}

struct ScheduleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule", abstract: "Run policy backups when they are due.", subcommands: [Run.self])

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run due policy backups and retention; keeps running unless --once.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Flag(help: "Run what is due now, then exit.") var once = false
        @Option(help: "Use this time as now (YYYY-MM-DDTHH:MM, local; Z for UTC).") var now: String?
        @Flag(
            help:
                "Print each run's outcomes as JSON: one object with --once, otherwise one line of JSON per run that did something."
        )
        var json = false
        @OptionGroup(title: "Output options") var progress: ProgressOptions

        /// One run of the scheduler, as `--json` prints it.
        struct RunView: Encodable {
            struct OutcomeView: Encodable {
                var server: String
                /// The location of the server's repository, when the scheduler serves locations.
                var location: String?
                var message: String
                var failed: Bool
                /// The point the outcome made, as `points --json` shows it.
                var point: PointView?
                /// The copy the outcome tells of, as `history --copies --json` shows it.
                var copy: CopyHistoryEntry?
            }
            var time: String
            var outcomes: [OutcomeView]
        }

        func run() throws {
            let fixed = try now.map { _ in try parseClock(now) }
            if fixed != nil && !once { throw VaultError(.invalidArgument, "--now needs --once") }
            let targets = try repository.scheduledTargets()
            // Copy policies run when the scheduler serves the locations file as a whole.
            let locations = targets.allSatisfy { $0.name != nil } ? try Locations.load() : nil
            let copies = locations.flatMap { locations in
                targets.count == locations.entries.count ? Copies.standard(locations) : nil
            }
            // A mirror takes copies only: nothing is backed up there, and its copies are kept by
            // their copy policy's retention, not by the policies they carry.
            let places = targets.filter { target in !(target.name.map { locations?.isMirror($0) ?? false } ?? false) }
            if places.isEmpty, let name = targets.first?.name {
                throw VaultError(
                    .invalidArgument, "location \(name) is a mirror: it takes copies only, and has nothing to schedule")
            }
            let schedulers = Schedulers(runsEachMinute: once)
            let backgroundCopies = Mutex<Set<String>>([])
            let signals = onStopSignals { schedulers.stop() }
            defer { signals.forEach { $0.cancel() } }
            var failed: [String] = []
            repeat {
                let clock = fixed ?? Date()
                var views: [RunView.OutcomeView] = []
                for (index, place) in places.enumerated() where !schedulers.isStopped {
                    let shownServer = { (server: String) in place.name.map { "\(server) (\($0))" } ?? server }
                    do {
                        let scheduler = try schedulers.scheduler(index) {
                            try Repository(location: place.location, unlock: place.unlock)
                        }
                        let repo = scheduler.repository
                        let printer = progress.printer()
                        let outcomes = try scheduler.runDue(now: clock, progress: printer.callback())
                        printer.clear()
                        views += try outcomes.map {
                            RunView.OutcomeView(
                                server: $0.server, location: place.name, message: $0.message, failed: $0.failed,
                                point: try $0.point.map { try repo.view(of: try repo.catalog.point(id: $0.id) ?? $0) })
                        }
                        // Each outcome is said once: a failure on stderr, the rest on stdout.
                        for outcome in outcomes where !json || outcome.failed {
                            let what = outcome.point.map { "\($0.kind.rawValue) \($0.name)" } ?? ""
                            let line =
                                "\(shownTime(clock)) \(shownServer(outcome.server)) \(what): \(outcome.message)\n"
                            if outcome.failed {
                                FileHandle.standardError.write(Data(line.utf8))
                            } else {
                                print(line, terminator: "")
                                fflush(nil)
                            }
                        }
                        if once {
                            let named = Set(outcomes.filter(\.failed).map(\.server))
                            failed += named.map(shownServer)
                            // A slot that failed in an earlier run is still failing.
                            for outcome in try scheduler.failedSlots(now: clock) where !named.contains(outcome.server) {
                                FileHandle.standardError.write(
                                    Data(
                                        "\(shownTime(clock)) \(shownServer(outcome.server)): \(outcome.message)\n".utf8)
                                )
                                failed.append(shownServer(outcome.server))
                            }
                        }
                    } catch {
                        // One repository alone fails the command as it always did; of several
                        // locations, one away (a bucket, say) fails only its own backups.
                        if once && places.count == 1 { throw error }
                        FileHandle.standardError.write(
                            Data(
                                "\(shownTime(clock)) scheduler: \(place.name.map { "location \($0): " } ?? "")\(error)\n"
                                    .utf8))
                        if once { failed.append(place.name ?? "scheduler") }
                    }
                }
                // Then each copy that is due, after the backups that give it new points.
                for policy in copies?.locations.copies ?? [] where !schedulers.isStopped {
                    guard let copies else { break }
                    do {
                        guard try copies.isDue(policy, now: clock), !copies.isRunning(policy) else { continue }
                    } catch {
                        FileHandle.standardError.write(
                            Data("\(shownTime(clock)) copy of vault \(policy.vault): \(error)\n".utf8))
                        if once { failed.append("copy of vault \(policy.vault)") }
                        continue
                    }
                    if once {
                        let printer = progress.printer()
                        let outcome = Self.copy(
                            policy, with: copies, unlock: repository.unlock, at: clock, json: json,
                            progress: printer.callback())
                        printer.clear()
                        views.append(outcome)
                        if outcome.failed { failed.append("copy of vault \(policy.vault)") }
                        continue
                    }
                    // A copy can take hours (the first one to a bucket), and the backups go on
                    // meanwhile. One stopped with the scheduler is cut off, which leaves a
                    // target that verifies, and the next copy completes it.
                    guard backgroundCopies.withLock({ $0.insert(policy.vault).inserted }) else { continue }
                    let (unlock, json) = (repository.unlock, json)
                    Thread.detachNewThread {
                        let outcome = Self.copy(policy, with: copies, unlock: unlock, at: clock, json: json)
                        if json {
                            let view = RunView(time: Units.formatTime(clock), outcomes: [outcome])
                            FileHandle.standardOutput.write(Data(JSON.encodeLine(view)))
                        }
                        backgroundCopies.withLock { _ = $0.remove(policy.vault) }
                    }
                }
                if json && (once || !views.isEmpty) {
                    let view = RunView(time: Units.formatTime(clock), outcomes: views)
                    if once {
                        printJSON(view)
                    } else {
                        FileHandle.standardOutput.write(Data(JSON.encodeLine(view)))
                    }
                }
                if views.isEmpty && once && !json { print("\(shownTime(clock)) nothing is due") }
                if once { break }
                for _ in 0..<30 where !schedulers.isStopped { Thread.sleep(forTimeInterval: 1) }
            } while !schedulers.isStopped
            if schedulers.isStopped { print("scheduler stopped") }
            // --once, as cron or a systemd timer runs it: exit 1 while anything due failed
            // (each said above, on stderr), so the job shows as failed while a server is not
            // being backed up, until its next slot succeeds.
            if once, !failed.isEmpty {
                FileHandle.standardError.write(Data("\(failed.count) due job(s) failed\n".utf8))
                throw ExitCode.failure
            }
        }

        /// Runs `policy`'s copy and says how it went: a line on stdout (stderr when it
        /// failed; none on stdout with `json`), and the outcome for `--json`.
        static func copy(
            _ policy: CopyPolicy, with copies: Copies, unlock: Unlock, at clock: Date, json: Bool,
            progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }
        ) -> RunView.OutcomeView {
            let (entry, problem) = copies.run(policy, unlock: unlock, now: clock, progress: progress)
            if let problem { warn(problem) }
            let line = "\(shownTime(clock)) \(copyLine(entry))\n"
            if entry.error != nil {
                FileHandle.standardError.write(Data(line.utf8))
            } else if !json {
                print(line, terminator: "")
                fflush(nil)
            }
            return RunView.OutcomeView(
                server: "-", location: policy.to, message: copyLine(entry), failed: entry.error != nil, point: nil,
                copy: entry)
        }
    }
}

/// The schedulers of one `schedule run`, one per repository it serves, each opened when first
/// reached (a location that could not be opened is tried again on the next run); a stop
/// reaches every one.
final class Schedulers: Sendable {
    private let opened = Mutex<[Int: Scheduler]>([:])
    private let stopped = Atomic<Bool>(false)
    private let runsEachMinute: Bool

    init(runsEachMinute: Bool) { self.runsEachMinute = runsEachMinute }

    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    /// Stops every scheduler: the running backup is cancelled and no other starts.
    func stop() {
        stopped.store(true, ordering: .relaxed)
        opened.withLock { $0.values.forEach { $0.stop() } }
    }

    /// The scheduler of the `index`th repository, opened with `open` the first time.
    func scheduler(_ index: Int, open: () throws -> Repository) throws -> Scheduler {
        if let scheduler = opened.withLock({ $0[index] }) { return scheduler }
        let scheduler = Scheduler(repository: try open(), runsEachMinute: runsEachMinute)
        opened.withLock { $0[index] = scheduler }
        if isStopped { scheduler.stop() }
        return scheduler
    }
}

struct RetentionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retention", abstract: "Apply retention now.", subcommands: [Apply.self])

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete the policy chains past each vault's keep-fulls; manual points are never touched.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "Only this vault (default: every vault).") var vault: String?
        @Flag(help: "Only list what would be deleted.") var dryRun = false
        @Flag var json = false

        func run() throws {
            let repo = try repository.open(vault.map { .vault($0) })
            let retention = Retention(repository: repo)
            let vaults = try vault.map { [try repo.catalog.vault(named: $0)] } ?? repo.catalog.vaults()
            var views: [RetentionView] = []
            defer { if json { printJSON(views) } }
            for vault in vaults {
                let removal =
                    dryRun
                    ? Removal(points: try retention.plan(vault: vault.name)) : try retention.apply(vault: vault.name)
                let points = removal.points
                if let problem = removal.collectionProblem { printError("warning: \(problem)") }
                if json {
                    views.append(
                        RetentionView(
                            vault: vault.name, dryRun: dryRun, points: try repo.views(of: points),
                            garbageCollectionProblem: removal.collectionProblem))
                    continue
                }
                for point in points {
                    print(
                        "\(dryRun ? "would delete" : "deleted") \(vault.name)/\(point.serverName)/\(point.name) (\(point.kind.rawValue), \(point.id))"
                    )
                }
                if points.isEmpty { print("\(vault.name): nothing to delete") }
            }
        }
    }
}

/// Runs `stop` on SIGINT or SIGTERM instead of dying, so a running backup is cancelled and
/// recorded as failed rather than left for the next command to find interrupted.
func onStopSignals(_ stop: @escaping @Sendable () -> Void) -> [any DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler(handler: stop)
        source.resume()
        return source
    }
}
