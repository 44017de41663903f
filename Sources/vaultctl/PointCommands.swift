import ArgumentParser
import Foundation
import Glibc
import Synchronization
import VaultCore

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Back up servers now: a full point of schedule type manual for each.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Servers to back up.") var servers: [String]
    @Option(help: "Point name (default manualbk_xxxx; -0001, -0002... are added for several servers).") var name:
        String?
    @Option(help: "Description, up to 255 characters.") var description = ""
    @Option(name: .customLong("tag"), help: "A tag KEY=VALUE; up to 10.") var tags: [String] = []
    @Option(name: .customLong("disk"), help: "Back up only this disk; repeat for more.") var disks: [String] = []
    @Flag(help: "Print the points made (or failed) as JSON, as `points --json` shows them.") var json = false
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func run() throws {
        let repo = try repository.open()
        let jobs = try repo.prepareManualBackups(
            servers: servers, name: name, description: description,
            tags: try Names.parseTags(tags), disks: disks.isEmpty ? nil : disks)
        let signals = onStopSignals { jobs.forEach { $0.cancel() } }
        defer { signals.forEach { $0.cancel() } }
        for job in jobs {
            if let enrolment = job.enrolment {
                FileHandle.standardError.write(Data("server \(job.point.serverName) \(enrolment.description)\n".utf8))
            }
        }
        var failed = false
        var views: [PointView] = []
        for job in jobs {
            let printer = progress.printer()
            defer { printer.clear() }
            let point = job.run(progress: printer.callback())
            printer.clear()
            if json {
                var view = try repo.view(of: point)
                view.enrolledIn = job.enrolment.map(PointView.EnrolmentView.init)
                views.append(view)
            } else {
                print(describe(point, disks: try repo.catalog.pointDisks(point.id)))
            }
            failed = failed || point.status != .active
        }
        if json { printJSON(views) }
        if failed { throw ExitCode.failure }
    }
}

/// Which points a command takes besides their server: the filters every listing and
/// `delete` share.
struct PointFilterOptions: ParsableArguments {
    @Option(help: "Only the points of this vault.") var vault: String?
    @Option(help: "Only full or incremental points.") var type: String?
    @Option(
        help:
            "Only points started at or after this time (YYYY-MM-DD[THH:MM], local; Z for UTC), or this long ago (7d, 12h)."
    )
    var since: String?
    @Option(help: "Only points started before this time, or this long ago.") var before: String?

    var filter: PointFilter {
        get throws {
            let kind = try type.map { text -> PointKind in
                guard let kind = PointKind(rawValue: text.lowercased()) else {
                    throw VaultError(.invalidArgument, "bad --type '\(text)': use full or incremental")
                }
                return kind
            }
            return PointFilter(vault: vault, kind: kind, since: try since.map(moment), before: try before.map(moment))
        }
    }

    /// A time given, or a duration before now.
    private func moment(_ text: String) throws -> Date {
        if let date = Units.parseTime(text) { return date }
        if let age = Units.parseDuration(text), !text.allSatisfy(\.isNumber) { return Date() - age }
        throw VaultError(.invalidArgument, "bad time '\(text)': use YYYY-MM-DD[THH:MM][Z] or a duration such as 7d")
    }

    var isEmpty: Bool { vault == nil && type == nil && since == nil && before == nil }
}

/// The id of the server named, when one is.
func serverId(_ name: String?, in repository: Repository) throws -> Int64? {
    try name.map { try repository.catalog.server(named: $0).id }
}

struct Points: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List restore points.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Only this server's points.") var server: String?
    @OptionGroup var filters: PointFilterOptions
    @Flag(help: "Include soft-deleted points.") var all = false
    @Flag(
        help:
            "Also show what deleting each point alone would free (UNIQUE): reads every point's maps and lists the stored chunks."
    )
    var unique = false
    @Flag var json = false

    func run() throws {
        let repo = try repository.open()
        let serverId = try serverId(server, in: repo)
        let filter = try filters.filter
        let points = try repo.catalog.points(server: serverId, includeSoftDeleted: all).filter(filter.matches)
        var views = try repo.views(of: points, server: serverId)
        if unique {
            let sizes = try repo.uniqueBytes(of: points)
            for i in views.indices { views[i].uniqueBytes = sizes[views[i].id] ?? 0 }
        }
        if json { return printJSON(views) }
        // DISK: the disks' size; ADDED: what the point stored anew (compressed), as borg shows.
        printTable(
            ["ID", "SERVER", "NAME", "TYPE", "SCHEDULE", "STATUS", "DISK", "ADDED"] + (unique ? ["UNIQUE"] : [])
                + ["TIME", "PARENT", "LOCATION"],
            views.map { v -> [String] in
                let status: String = v.deletion.isEmpty ? v.status : "\(v.status) (\(v.deletion))"
                var row: [String] = [String(v.id.prefix(8)), v.server, v.name, v.type, v.scheduleType, status]
                row += [Units.formatSize(v.diskBytes), Units.formatSize(v.addedBytes)]
                if let bytes = v.uniqueBytes { row.append(Units.formatSize(bytes)) }
                row += [shownTime(v.time), v.parent.map { String($0.prefix(8)) } ?? "-", v.location]
                return row
            })
    }
}

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show every backup attempt and its deletion status.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Only this server's history.") var server: String?
    @OptionGroup var filters: PointFilterOptions
    @Option(
        name: .customLong("server"),
        help: ArgumentHelp("The same as the SERVER argument (kept for a release).", visibility: .hidden))
    var serverOption: String?
    @Flag var json = false

    func run() throws {
        let repo = try repository.open()
        if serverOption != nil {
            warn(
                "history --server SERVER is now history SERVER, as points and verify take it; --server goes in the next release"
            )
        }
        let serverId = try serverId(server ?? serverOption, in: repo)
        let filter = try filters.filter
        let entries = try repo.history(server: serverId, filter: filter)
        if json { return printJSON(entries) }
        printTable(
            ["ID", "SERVER", "NAME", "STATUS", "TYPE", "SCHEDULE", "SIZE", "START", "END", "DELETION", "REASON"],
            entries.map { e in
                [
                    String(e.id.prefix(8)), e.server, e.name, e.status, e.type, e.scheduleType,
                    Units.formatSize(e.estimatedSize),
                    shownTime(e.time), e.finishedAt.map(shownTime) ?? "-", e.deletion.isEmpty ? "-" : e.deletion,
                    e.error ?? "-",
                ]
            })
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Soft-delete points (restorable with undelete until purged).",
        discussion: """
            Give points (id, id prefix or SERVER/NAME), or select them as points does: --server SERVER \
            --vault, --type, --since, --before. All are deleted, newest first, or none: a point that \
            stays and depends on one of them (an incremental) refuses the whole deletion.
            """)
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Points: id, id prefix, or SERVER/NAME.") var points: [String] = []
    @Option(help: "Select the points of this server (with the filters below).") var server: String?
    @OptionGroup var filters: PointFilterOptions
    @Flag var json = false

    func run() throws {
        let repo = try repository.open()
        let selects = server != nil || !filters.isEmpty
        var chosen: [Point] = []
        for point in try points.map({ try repo.catalog.point(matching: $0) }) where !chosen.contains(point) {
            chosen.append(point)
        }
        if selects {
            // A selection leaves out points being made; a point named is refused while it is.
            let filter = try filters.filter
            chosen += try repo.catalog.points(server: try serverId(server, in: repo), includeSoftDeleted: false)
                .filter { filter.matches($0) && $0.status != .creating && !chosen.map(\.id).contains($0.id) }
        } else if points.isEmpty {
            throw ValidationError(
                "give the points to delete, or select them with --server, --vault, --type, --since or --before")
        }
        let deleted = try repo.softDelete(points: chosen)
        if json {
            let views = try deleted.map { try repo.view(of: try repo.catalog.point(id: $0.id) ?? $0) }
            // One point named alone gives one object, as before; a selection, an array.
            if points.count == 1 && !selects, let view = views.first { return printJSON(view) }
            return printJSON(views)
        }
        for point in deleted { print("soft-deleted \(point.serverName)/\(point.name) (\(point.id))") }
    }
}

struct Undelete: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restore a soft-deleted point.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Point id, id prefix, or SERVER/NAME.") var point: String

    @Flag var json = false

    func run() throws {
        let repo = try repository.open()
        let restored = try repo.undelete(point)
        if json { return printJSON(try repo.view(of: try repo.catalog.point(id: restored.id) ?? restored)) }
        print("restored \(restored.serverName)/\(restored.name) (\(restored.id))")
    }
}

struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete soft-deleted points for good and free their space.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Option(help: "Only points soft-deleted at least this long ago (e.g. 7d, 12h).") var olderThan: String?
    @Flag var json = false

    func run() throws {
        let age = try olderThan.map(Units.durationArgument) ?? 0
        let repo = try repository.open()
        let removal = try repo.purge(olderThan: age)
        let purged = removal.points
        if let problem = removal.collectionProblem { printError("warning: \(problem)") }
        if json {
            let views = try purged.map { try repo.view(of: try repo.catalog.point(id: $0.id) ?? $0) }
            return printJSON(PurgeView(purged: views, garbageCollectionProblem: removal.collectionProblem))
        }
        for point in purged { print("purged \(point.serverName)/\(point.name) (\(point.id))") }
        if purged.isEmpty { print("nothing to purge") }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild a point's disk as a raw image file, or stream it.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Point id, id prefix, or SERVER/NAME.") var point: String
    @Option(help: "Disk to export (needed when the point has several).") var disk: String?
    @Option(
        name: .shortAndLong,
        help:
            "Output file (written beside and renamed when complete), a device or FIFO (written in place), or - for standard output."
    ) var output: String
    @Flag(help: "Report what was written as JSON (on standard output, so not with -o -).") var json = false
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func validate() throws {
        if json && output == "-" { throw ValidationError("--json needs -o FILE: standard output carries the image") }
    }

    func run() throws {
        let repo = try repository.open()
        let source = try repo.exportSource(point: point, disk: disk)
        let target = try ExportTarget.open(output)
        let printer = progress.printer()
        defer { printer.clear() }
        let image = try repo.export(point: source.point, disk: source.disk, to: target, progress: printer.callback())
        printer.clear()
        try target.commit()
        if json {
            return printJSON(ExportView(point: source.point, disk: source.disk, output: output, size: image.size))
        }
        FileHandle.standardError.write(Data("exported \(Units.formatSize(image.size)) to \(target.name)\n".utf8))
    }
}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Restore a point's disk onto a block device or a file, at once (--instant) or writing only what differs.",
        discussion: """
            'vaultctl restore POINT --disk D --to TARGET' is 'vaultctl restore start': see its help. \
            An instant restore (--instant) is followed with 'restore status' and ended with \
            'restore finish' (or 'restore cancel').
            """,
        subcommands: [
            RestoreStart.self, RestoreStatus.self, RestoreFinish.self, RestoreCancel.self, RestoreHistory.self,
        ],
        defaultSubcommand: RestoreStart.self)
}

struct RestoreStart: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Make a block device or a file hold a point's disk, writing only where it differs.",
        discussion: """
            Each chunk of the target is read and compared with the point's, and only the chunks \
            that differ are written; where the point is zero the target gets a hole (a file) or a \
            zeroed range (a device). A file that does not exist is made, sparse. With --from-point \
            P, the target is taken to hold point P of the same disk (a later or an earlier one): \
            only the chunks that differ between the two points are written, and the target is \
            read only to check that claim at a few places. A mounted or busy device, a file in \
            use by a loop device or a running VM, and a device smaller than the disk are refused \
            before anything is written. A restore cut off part way can be run again. \
            With --instant, the disk is usable at once: a mount of the repository serves a \
            writable image, MOUNT/.restores/ID/DISK.img, that reads the point where the target is \
            not filled yet and writes into the target, while the mount copies the rest behind. \
            The command prints the image's path (when a mount of the repository runs; otherwise \
            the fill starts when one does). A crash or a kill of the mount loses nothing: mounted \
            again, the restore goes on. When 'restore status' says complete, stop what uses the \
            image, run 'restore finish ID', and point the machine at the target.
            """)
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Point id, id prefix, or SERVER/NAME.") var point: String
    @Option(help: "Disk to restore (needed when the point has several).") var disk: String?
    @Option(help: "A block device or a file (made when absent).") var to: String
    @Option(
        name: .customLong("from-point"),
        help: "The point the target holds now (id, SERVER/NAME, or NAME of the same server).")
    var fromPoint: String?
    @Flag(help: "Make the disk usable at once through a writable image in the mount, and fill the target behind.")
    var instant = false
    @Option(help: "With --instant: the vaultfs mount of this repository to serve the image (default: the one running).")
    var mount: String?
    @Flag(help: "Report what was written and skipped (or the instant restore) as JSON.") var json = false
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func validate() throws {
        if instant && fromPoint != nil {
            throw ValidationError("--instant fills the whole target; it does not take --from-point")
        }
        if mount != nil && !instant { throw ValidationError("--mount goes with --instant") }
    }

    func run() throws {
        let repo = try repository.open()
        let source = try repo.exportSource(point: point, disk: disk)
        if instant { return try startInstant(repo, source.point, source.disk) }
        let base = try fromPoint.map { reference -> Point in
            do {
                return try repo.readablePoint(reference).point
            } catch let error as VaultError where error.code == .notFound && !reference.contains("/") {
                return try repo.readablePoint("\(source.point.serverName)/\(reference)").point
            }
        }
        let target = try RestoreTarget.open(to)
        let printer = progress.printer()
        defer { printer.clear() }
        let restores = InstantRestores.standard
        let report: RestoreReport
        do {
            report = try repo.restore(
                point: source.point, disk: source.disk, to: target, base: base, progress: printer.callback())
        } catch {
            var entry = RestoreHistoryEntry(
                kind: base == nil ? .compare : .fromPoint, outcome: .failed, point: source.point, disk: source.disk,
                target: Posix.absolutePath(to), size: 0)
            entry.fromPoint = base?.id
            entry.error = "\(error)"
            restores.record(entry)
            throw error
        }
        printer.clear()
        if let problem = restores.record(RestoreHistoryEntry(report)) { printError("warning: \(problem)") }
        if json { return printJSON(RestoreView(report)) }
        FileHandle.standardError.write(
            Data(
                """
                restored \(report.point.serverName)/\(report.point.name) disk \(report.disk) to \(report.target) \
                (\(Units.formatSize(report.size))) in \(String(format: "%.1f", report.seconds)) s: \
                wrote \(Units.formatSize(report.writtenBytes)) (\(report.writtenChunks) chunks), \
                zeroed \(Units.formatSize(report.zeroedBytes)), left \(Units.formatSize(report.unchangedBytes)) as it was\
                \(report.comparedBytes > 0 ? ", read \(Units.formatSize(report.comparedBytes)) to compare" : "")

                """.utf8))
    }

    private func startInstant(_ repo: Repository, _ point: Point, _ disk: String) throws {
        let restores = InstantRestores.standard
        let record = try repo.startInstantRestore(point: point, disk: disk, to: to, restores: restores)
        if let problem = restores.record(RestoreHistoryEntry(record, outcome: .started)) {
            printError("warning: \(problem)")
        }
        let image = InstantRestoreMounts.image(of: record, repository: repo, mount: mount)
        if json {
            return printJSON(InstantRestoreView(record: record, image: image, status: restores.status(of: record)))
        }
        printError(
            "instant restore \(record.id): \(point.serverName)/\(point.name) disk \(disk) into \(record.target) (\(Units.formatSize(record.size)))"
        )
        guard let image else {
            printError(
                "no mount of this repository serves it yet: mount it (vaultfs \(repo.location.name) MOUNTPOINT) and the image is MOUNTPOINT/.restores/\(record.id)/\(disk).img; the fill starts then"
            )
            return
        }
        print(image)
        printError(
            "use the image now (a VM, a loop device, dd); it fills in behind: 'vaultctl restore status \(record.id)'; when complete, stop what uses it and run 'vaultctl restore finish \(record.id)'"
        )
    }
}

/// Where a running mount serves an instant restore's image.
enum InstantRestoreMounts {
    /// The image's path in `mount`, or in a vaultfs mount of `repository` that serves it
    /// within a few seconds; nil when none does.
    static func image(of record: InstantRestoreRecord, repository: Repository, mount: String?) -> String? {
        let candidates: [String]
        if let mount {
            candidates = [Posix.realPath(mount) ?? mount]
        } else {
            let mounts = MountTable.current().filter { $0.type == "fuse.vaultfs" }
            // Those showing this repository (by their source) first.
            candidates =
                mounts.filter { $0.source == repository.location.name }.map(\.target)
                + mounts.filter { $0.source != repository.location.name }.map(\.target)
        }
        let deadline = Date().addingTimeInterval(5)
        repeat {
            for folder in candidates {
                let path = "\(folder)/.restores/\(record.id)/\(record.disk).img"
                if reachable(path) { return path }
            }
            usleep(100_000)
        } while Date() < deadline && !candidates.isEmpty
        return nil
    }

    /// Whether `path` exists, asked on another thread and waited for at most a second, so a
    /// hung mount cannot hang the command.
    private static func reachable(_ path: String) -> Bool {
        let found = Mutex(false)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var st = stat()
            let exists = stat(path, &st) == 0
            found.withLock { $0 = exists }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 1)
        return found.withLock { $0 }
    }
}

struct RestoreStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show how far instant restores have come: filled, rate and time left.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "A restore id (or prefix); all of this repository's when omitted.") var id: String?
    @Flag(help: "Report as JSON.") var json = false

    func run() throws {
        let repo = try repository.open()
        let restores = InstantRestores.standard
        let found = restores.records(of: repo)
        for problem in found.problems { printError("warning: \(problem)") }
        let records = try id.map { [try restores.record($0, of: repo)] } ?? found.records
        let statuses = records.map { restores.status(of: $0) }
        if json { return printJSON(statuses) }
        if statuses.isEmpty { return print("no instant restores of this repository on this host") }
        printTable(
            ["ID", "POINT", "DISK", "STATE", "FILLED", "RATE", "LEFT", "TARGET"],
            statuses.map { status in
                [
                    status.id, "\(status.server)/\(status.pointName)", status.disk,
                    status.state == .waiting ? "waiting for a mount" : status.state.rawValue,
                    "\(String(format: "%.1f", status.percent))% of \(Units.formatSize(status.size))",
                    status.bytesPerSecond.map { "\(Units.formatSize(Int64($0)))/s" } ?? "-",
                    status.etaSeconds.map { Units.formatDuration($0) } ?? "-", status.target,
                ]
            })
        for status in statuses where status.error != nil {
            printError("restore \(status.id): \(status.error ?? "")")
        }
    }
}

struct RestoreHistory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "List the restores this host ran: what each wrote, zeroed and left, and how it ended.")
    @Flag(help: "Report as JSON.") var json = false

    func run() throws {
        let entries = try InstantRestores.standard.history()
        if json { return printJSON(entries) }
        if entries.isEmpty { return print("no restores on this host yet") }
        let size = { (bytes: Int64?) in bytes.map { Units.formatSize($0) } ?? "-" }
        printTable(
            ["TIME", "KIND", "OUTCOME", "POINT", "DISK", "WRITTEN", "ZEROED", "LEFT", "SECONDS", "TARGET"],
            entries.map { entry in
                [
                    shownTime(entry.time), entry.kind.rawValue, entry.outcome.rawValue,
                    "\(entry.server)/\(entry.pointName)", entry.disk,
                    size(entry.writtenBytes ?? entry.filledBytes), size(entry.zeroedBytes),
                    size(entry.unchangedBytes), entry.seconds.map { String(format: "%.1f", $0) } ?? "-",
                    entry.target + (entry.error.map { " (\($0))" } ?? ""),
                ]
            })
    }
}

struct RestoreFinish: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finish",
        abstract: "End a complete instant restore: the target alone holds the disk; the image goes.",
        discussion: """
            Refused while the image is open (stop the VM or detach the loop device first) and \
            until every range is in the target.
            """)
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "The restore id (or prefix).") var id: String

    func run() throws {
        let repo = try repository.open()
        let restores = InstantRestores.standard
        let record = try restores.record(id, of: repo)
        do { try restores.end(record, cancel: false, repository: repo) } catch {
            // Ended, but the mount was slow to let the target go: the history still says so.
            if !restores.isKept(record.id) {
                restores.record(RestoreHistoryEntry(record, outcome: .finished, filledBytes: record.size))
            }
            throw error
        }
        restores.record(RestoreHistoryEntry(record, outcome: .finished, filledBytes: record.size))
        printError(
            "restore \(record.id) finished: \(record.target) holds \(record.server)/\(record.pointName) disk \(record.disk) with every write made through the image; point the machine at it"
        )
    }
}

struct RestoreCancel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Stop an instant restore: the image goes, the target stays as filled so far.",
        discussion: "Refused while the image is open. The point is no longer kept from deletion for it.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "The restore id (or prefix).") var id: String

    func run() throws {
        let repo = try repository.open()
        let restores = InstantRestores.standard
        let record: InstantRestoreRecord
        do { record = try restores.record(id, of: repo) } catch let error as VaultError where error.code == .notFound {
            // This host lost the restore (its state folder), but the repository still keeps
            // the point for it: let it go.
            guard repo.releaseRestorePin(id) else { throw error }
            return printError(
                "restore \(id) is not kept on this host; the point is no longer kept from deletion for it")
        }
        let status = restores.status(of: record)
        do { try restores.end(record, cancel: true, repository: repo) } catch {
            if !restores.isKept(record.id) {
                restores.record(RestoreHistoryEntry(record, outcome: .cancelled, filledBytes: status.filledBytes))
            }
            throw error
        }
        restores.record(RestoreHistoryEntry(record, outcome: .cancelled, filledBytes: status.filledBytes))
        printError(
            "restore \(record.id) cancelled: \(record.target) holds a partly restored disk (\(String(format: "%.1f", status.percent))% filled); remove it or restore again"
        )
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read back every chunk and map that points use and check them; exit 1 on damage.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Only this server's points.") var server: String?
    @Flag(help: "Report as JSON; the exit status still says whether anything is damaged.") var json = false
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func run() throws {
        let repo = try repository.open()
        let serverId = try server.map { try repo.catalog.server(named: $0).id }
        let printer = progress.printer()
        defer { printer.clear() }
        let report = try Verifier(repository: repo).verify(server: serverId, progress: printer.callback())
        printer.clear()
        if json {
            printJSON(try repo.view(of: report))
            if !report.isClean { throw ExitCode.failure }
            return
        }
        for problem in report.problems { print("damaged: \(problem.what): \(problem.reason)") }
        for point in report.affected { print("affected point: \(point.serverName)/\(point.name) (\(point.id))") }
        print(
            "checked \(report.chunks) chunk(s) of \(report.points) point(s): "
                + (report.isClean
                    ? "all intact" : "\(report.problems.count) damaged, \(report.affected.count) points affected"))
        if !report.isClean { throw ExitCode.failure }
    }
}

struct Collect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove chunks, maps and temporary files that no point needs, and report what was freed.",
        discussion: """
            A chunk is kept while any point that the catalog or the repository's manifests hold restorable \
            uses it, or while a reader (the mount, an export) has an image of a point open. Backups wait \
            for a running collection; gc does not start while a backup runs on any host. An unused chunk is \
            first marked and removed by a later gc once the grace period has passed (set at init; none in a \
            folder, a day in a bucket). In a bucket, gc lists every chunk once a week (or with --list) to \
            find those of killed backups; otherwise it looks only at the maps it removes.
            """)
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Flag(help: "Only count what would be removed.") var dryRun = false
    @Option(help: "The grace period for this run, e.g. 0 or 12h (default: the repository's).") var grace: String?
    @Flag(help: "List every chunk of the store, to find those of killed backups (always done in a folder).") var list =
        false
    @Flag var json = false
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func run() throws {
        let printer = progress.printer()
        defer { printer.clear() }
        let grace = try self.grace.map(Units.durationArgument)
        let result = try GarbageCollector(repository: try repository.open(), grace: grace, listAll: list)
            .collect(dryRun: dryRun, progress: printer.callback())
        printer.clear()
        if json { return printJSON(result) }
        guard result.ran else {
            throw VaultError(.busy, "a backup is running; nothing was collected. Run gc again when it ends")
        }
        let verb = dryRun ? "would remove" : "removed"
        let unsized = result.removedChunksUnsized > 0 ? " and \(result.removedChunksUnsized) of unlisted size" : ""
        print(
            "\(verb) \(result.removedChunks) chunk(s) (\(Units.formatSize(result.removedChunkBytes))\(unsized)), "
                + "\(result.removedMaps) map folder(s), \(result.removedTemporaries) temporary file(s) "
                + "(\(Units.formatSize(result.removedTemporaryBytes))); kept \(result.keptChunks) chunk(s) in use")
        if result.markedChunks > 0 {
            print(
                "marked \(result.markedChunks) unused chunk(s): a gc after the grace period (\(Units.formatDuration(result.graceSeconds))) removes them"
            )
        }
        for point in result.disagreements {
            print(
                "kept: \(point) is deleted or failed in the catalog but restorable in its manifest; 'vaultctl repair --rebuild-catalog' settles it"
            )
        }
        for map in result.unreadableMaps {
            let what =
                result.listed
                ? "removed; the listing found its unused chunks" : "kept until 'vaultctl gc --list' finds its chunks"
            FileHandle.standardError.write(Data("warning: the map of unused point \(map); \(what)\n".utf8))
        }
    }
}

struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild the catalog from the repository's manifests.",
        discussion: """
            The catalog is an index; the repository's manifests describe every vault, policy, server and \
            point. When the catalog is missing, damaged or older than the repository, every command refuses \
            and names this one. A catalog that is replaced is kept beside as catalog.sqlite.replaced-TIME.
            """)
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Flag(help: "Make a new catalog from the manifests.") var rebuildCatalog = false
    @Flag var json = false

    func run() throws {
        guard rebuildCatalog else { throw VaultError(.invalidArgument, "say what to repair: --rebuild-catalog") }
        let report = try CatalogRebuild.run(location: try repository.location(), unlock: repository.unlock)
        if json {
            printJSON(report)
        } else {
            print(
                "rebuilt the catalog: \(report.vaults) vault(s), \(report.servers) server(s), \(report.points) point(s) in history, \(report.restorable) restorable"
            )
            if let previous = report.previousCatalog { print("the previous catalog is kept as \(previous)") }
        }
        // A running mount reads the new catalog at its next look; say which ones there are.
        let location = try repository.location()
        for mount in MountTable.current() where mount.type == "fuse.vaultfs" && mount.source == location.name {
            FileHandle.standardError.write(
                Data(
                    "the vaultfs mount at \(mount.target) reads the new catalog from its next look (within seconds)\n"
                        .utf8))
        }
        // A point whose maps are there and whose manifest is not cannot come back: say so, and
        // fail, so a script does not take the rebuild for a whole one.
        for id in report.unaccounted {
            FileHandle.standardError.write(
                Data(
                    "error: point \(id) has chunk maps but no manifest (manifests/points/\(id).json): it is not in the rebuilt catalog\n"
                        .utf8))
        }
        if !report.unaccounted.isEmpty { throw ExitCode.failure }
    }
}

struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract:
            "Copy restorable points to another repository (a folder or s3://), made as this one's mirror when new; skips what it has."
    )
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Option(help: "The repository to copy from (the same as --repo; default: $VAULT_REPO).") var from: String?
    @Option(help: "The repository to copy into: a new folder or s3:// prefix becomes this one's mirror (same key).")
    var to: String
    @Option(
        help:
            "The state folder of an s3:// target (default: one of its own under /var/lib/vaultfs/s3 or ~/.local/state/vaultfs/s3)."
    )
    var toStateDir: String?
    @Option(help: "Only this vault's points.") var vault: String?
    @Flag(help: "Report what was copied as JSON.") var json = false
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func run() throws {
        let sourceLocation = try repository.store.location(of: try from ?? repository.path())
        let source = try Repository(location: sourceLocation, unlock: repository.unlock)
        // The target never shares the source's state folder: a mirror has the source's id.
        var environment = ProcessInfo.processInfo.environment
        environment["VAULT_STATE_DIR"] = nil
        let target = try RepositoryLocation.parse(
            to, endpoint: repository.store.endpoint, region: repository.store.region,
            stateDirectory: toStateDir, environment: environment)
        let printer = progress.printer()
        defer { printer.clear() }
        let report = try Sync.run(
            from: source, to: target, vault: vault, unlock: repository.unlock, progress: printer.callback())
        printer.clear()
        if json { return printJSON(report) }
        print(
            "synced \(report.points) point(s) to \(target.name) (\(report.pointsPresent) already there): \(report.chunks) chunk(s), \(Units.formatSize(report.chunkBytes)) copied, \(report.chunksPresent) chunk reference(s) already there"
        )
    }
}
