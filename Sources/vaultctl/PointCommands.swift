import ArgumentParser
import Foundation
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
        let repo = try repository.openToWrite(servers.count == 1 ? .server(servers[0]) : nil)
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

    /// What a command with these filters names, by which it finds its location: the server,
    /// else the vault.
    func subject(server: String?) -> Locations.Subject? {
        server.map { .server($0) } ?? vault.map { .vault($0) }
    }

    var filter: PointFilter {
        get throws {
            let kind = try type.map { text -> PointKind in
                guard let kind = PointKind(rawValue: text.lowercased()) else {
                    throw VaultError(.invalidArgument, "bad --type '\(text)': use full or incremental")
                }
                return kind
            }
            return PointFilter(
                vault: vault, kind: kind, since: try since.map { try Units.parseMoment($0) },
                before: try before.map { try Units.parseMoment($0) })
        }
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
        let repo = try repository.open(filters.subject(server: server))
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
    @Flag(help: "Show this host's copies ('vault set --copy-to') instead: each attempt, and why it failed.")
    var copies = false
    @Flag var json = false

    func run() throws {
        if copies { return try printCopyHistory(json: json) }
        let repo = try repository.open(filters.subject(server: server ?? serverOption))
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
        let repo = try repository.open(points.first.map { .point($0) } ?? filters.subject(server: server))
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
        let repo = try repository.open(.point(point))
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
        let repo = try repository.open(.point(point))
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

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read back every chunk and map that points use and check them; exit 1 on damage.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "Only this server's points.") var server: String?
    @Flag(help: "Report as JSON; the exit status still says whether anything is damaged.") var json = false
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func run() throws {
        let repo = try repository.open(server.map { .server($0) })
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
        let repo = try repository.open()
        var result = try GarbageCollector(repository: repo, grace: grace, listAll: list)
            .collect(dryRun: dryRun, progress: printer.callback())
        if result.ran { result.snapshots = repo.tidyDiskSnapshots(dryRun: dryRun) }
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
        if !result.snapshots.removed.isEmpty {
            print(
                "\(verb) \(result.snapshots.removed.count) snapshot(s) no point needs: \(result.snapshots.removed.joined(separator: ", "))"
            )
        }
        for problem in result.snapshots.problems {
            FileHandle.standardError.write(Data("warning: snapshots: \(problem)\n".utf8))
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
        let target = try repository.target()
        let report = try CatalogRebuild.run(location: target.location, unlock: target.unlock)
        if json {
            printJSON(report)
        } else {
            print(
                "rebuilt the catalog: \(report.vaults) vault(s), \(report.servers) server(s), \(report.points) point(s) in history, \(report.restorable) restorable"
            )
            if let previous = report.previousCatalog { print("the previous catalog is kept as \(previous)") }
        }
        // A running mount reads the new catalog at its next look; say which ones there are.
        let location = target.location
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
        let (sourceLocation, sourceUnlock) =
            try from.map { (try repository.store.location(of: $0), repository.unlock) }
            ?? repository.target()
        let source = try Repository(location: sourceLocation, unlock: sourceUnlock)
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
