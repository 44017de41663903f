import ArgumentParser
import Foundation
import Glibc
import Synchronization
import VaultCore

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
        let repo = try repository.open(.point(point))
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
        try restores.end(record, cancel: false, repository: repo)
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
        let filled = try restores.end(record, cancel: true, repository: repo)
        printError(
            "restore \(record.id) cancelled: \(record.target) holds a partly restored disk (\(String(format: "%.1f", Double(filled) * 100 / Double(record.size)))% filled); remove it or restore again"
        )
    }
}
