import ArgumentParser
import Foundation
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
            try repository.open().setPolicy(policy, vault: vault)
            print("vault \(vault): \(policyText(policy))")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a vault's policy.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The vault.") var vault: String
        @Flag var json = false

        func run() throws {
            let found = try repository.open().catalog.vault(named: vault)
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
            try repository.open().setPolicy(nil, vault: vault)
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
                var message: String
                var failed: Bool
                /// The point the outcome made, as `points --json` shows it.
                var point: PointView?
            }
            var time: String
            var outcomes: [OutcomeView]
        }

        func run() throws {
            let repo = try repository.open()
            let scheduler = Scheduler(repository: repo, runsEachMinute: once)
            let fixed = try now.map { _ in try parseClock(now) }
            if fixed != nil && !once { throw VaultError(.invalidArgument, "--now needs --once") }
            let signals = onStopSignals { scheduler.stop() }
            defer { signals.forEach { $0.cancel() } }
            var failed: [Scheduler.Outcome] = []
            repeat {
                let clock = fixed ?? Date()
                do {
                    let printer = progress.printer()
                    let outcomes = try scheduler.runDue(now: clock, progress: printer.callback())
                    printer.clear()
                    if json && (once || !outcomes.isEmpty) {
                        let view = RunView(
                            time: Units.formatTime(clock),
                            outcomes: try outcomes.map {
                                RunView.OutcomeView(
                                    server: $0.server, message: $0.message, failed: $0.failed,
                                    point: try $0.point.map {
                                        try repo.view(of: try repo.catalog.point(id: $0.id) ?? $0)
                                    })
                            })
                        if once {
                            printJSON(view)
                        } else {
                            FileHandle.standardOutput.write(Data(JSON.encodeLine(view)))
                        }
                    }
                    if outcomes.isEmpty && once && !json { print("\(shownTime(clock)) nothing is due") }
                    // Each outcome is said once: a failure on stderr, the rest on stdout.
                    for outcome in outcomes where !json || outcome.failed {
                        let what = outcome.point.map { "\($0.kind.rawValue) \($0.name)" } ?? ""
                        let line = "\(shownTime(clock)) \(outcome.server) \(what): \(outcome.message)\n"
                        if outcome.failed {
                            FileHandle.standardError.write(Data(line.utf8))
                        } else {
                            print(line, terminator: "")
                            fflush(nil)
                        }
                    }
                    if once {
                        failed += outcomes.filter(\.failed)
                        // A slot that failed in an earlier run is still failing.
                        let named = Set(failed.map(\.server))
                        for outcome in try scheduler.failedSlots(now: clock) where !named.contains(outcome.server) {
                            FileHandle.standardError.write(
                                Data("\(shownTime(clock)) \(outcome.server): \(outcome.message)\n".utf8))
                            failed.append(outcome)
                        }
                    }
                } catch  where !once {
                    // A long-running scheduler outlives a bad moment (a busy catalog, say) and tries again.
                    FileHandle.standardError.write(Data("\(shownTime(clock)) scheduler: \(error)\n".utf8))
                }
                if once { break }
                for _ in 0..<30 where !scheduler.isStopped { Thread.sleep(forTimeInterval: 1) }
            } while !scheduler.isStopped
            if scheduler.isStopped { print("scheduler stopped") }
            // --once, as cron or a systemd timer runs it: exit 1 while anything due failed
            // (each said above, on stderr), so the job shows as failed while a server is not
            // being backed up, until its next slot succeeds.
            if once, !failed.isEmpty {
                FileHandle.standardError.write(Data("\(failed.count) due job(s) failed\n".utf8))
                throw ExitCode.failure
            }
        }
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
            let repo = try repository.open()
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
