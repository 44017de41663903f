import ArgumentParser
import Foundation
import VaultCore

/// `vault set VAULT --copy-to LOCATION --copy-every 24h --copy-keep-fulls N`, or `--no-copy`.
struct VaultSet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Set a vault's copy policy: its points copied to another location on a schedule.",
        discussion: """
            The scheduler ('vaultctl schedule run') copies the vault's new points to the other \
            location every --copy-every, as they are stored (sealed when encrypted), and keeps the \
            newest --copy-keep-fulls policy chains of each server there; manual points are copied \
            and kept. The target is a location made as the mirror of the vault's location \
            ('vaultctl location add NAME PLACE --mirror-of LOCATION'): it takes copies only. A failed \
            copy is tried again after an hour. 'vaultctl copy VAULT' copies now.
            """)
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "The vault.") var name: String
    @Option(help: "The location its points are copied to.") var copyTo: String?
    @Option(help: "How often the copy runs: a duration such as 24h or 1d (default: 24h, or as set).")
    var copyEvery: String?
    @Option(help: "Policy fulls (chains) each server keeps in the copy (default: as set).") var copyKeepFulls: Int?
    @Flag(help: "Remove the vault's copy policy (what was copied stays where it is).") var noCopy = false

    func run() throws {
        guard var locations = try Locations.load() else {
            throw VaultError(
                .invalidArgument,
                "copy policies are between named locations, and \(Locations.path()) does not exist (add them with 'vaultctl location add')"
            )
        }
        if noCopy {
            guard copyTo == nil, copyEvery == nil, copyKeepFulls == nil else {
                throw VaultError(.invalidArgument, "--no-copy takes no other copy option")
            }
            try locations.clearCopy(vault: name)
            try locations.save()
            return print("vault \(name): no copy policy (what was copied stays)")
        }
        guard let copyTo else {
            throw VaultError(.invalidArgument, "give --copy-to LOCATION (or --no-copy)")
        }
        let existing = locations.copyPolicy(of: name)
        let every = try copyEvery.map { text in
            guard let seconds = Units.parseDuration(text), seconds < Double(Int32.max) else {
                throw VaultError(.invalidArgument, "bad --copy-every '\(text)': use a duration such as 24h or 1d")
            }
            return Int(seconds)
        }
        guard let keep = copyKeepFulls ?? existing?.keepFulls else {
            throw VaultError(.invalidArgument, "give --copy-keep-fulls N: how many policy chains the copy keeps")
        }
        let policy = try CopyPolicy(
            vault: name, to: copyTo, everySeconds: every ?? existing?.everySeconds ?? 86400, keepFulls: keep)
        try locations.setCopy(policy, unlock: repository.unlock)
        try locations.save()
        print("vault \(name): \(copyText(policy))")
    }
}

func copyText(_ policy: CopyPolicy) -> String {
    "copied to location \(policy.to) every \(Units.formatDuration(Double(policy.everySeconds))), keeping \(policy.keepFulls) fulls there"
}

/// A copy's line: what it copied and deleted, or why it failed.
func copyLine(_ entry: CopyHistoryEntry) -> String {
    if let error = entry.error {
        return "copy of vault \(entry.vault) to \(entry.to) failed: \(error)"
    }
    var line =
        "copied vault \(entry.vault) from \(entry.from) to \(entry.to): \(entry.points) point(s) (\(entry.pointsPresent) there already), \(entry.chunks) chunk(s), \(Units.formatSize(entry.chunkBytes))"
    if entry.deleted > 0 { line += "; its retention there deleted \(entry.deleted) point(s)" }
    return line
}

/// `vaultctl copy VAULT`: runs a vault's copy policy now.
struct CopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy a vault's points to its copy location now, as its copy policy says ('vault set --copy-to').")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Argument(help: "The vault.") var vault: String
    @Option(help: "Record the copy at this time (for testing schedules).") var now: String?
    @Flag(help: "Report the copy as JSON.") var json = false
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func run() throws {
        let clock = try parseClock(now)
        guard let locations = try Locations.load(), let policy = locations.copyPolicy(of: vault) else {
            throw VaultError(
                .notFound,
                "vault \(vault) has no copy policy; set one with 'vaultctl vault set \(vault) --copy-to LOCATION --copy-keep-fulls N'"
            )
        }
        let printer = progress.printer()
        let (entry, problem) = Copies.standard(locations).run(
            policy, unlock: repository.unlock, now: clock, progress: printer.callback())
        printer.clear()
        if let problem { warn(problem) }
        if json {
            printJSON(entry)
        } else if entry.error == nil {
            print(copyLine(entry))
        }
        if entry.error != nil {
            printError(copyLine(entry))
            throw ExitCode.failure
        }
    }
}

/// `history --copies`: this host's copies.
func printCopyHistory(json: Bool) throws {
    let entries = try Copies.standard(try Locations.load() ?? .empty()).history()
    if json { return printJSON(entries) }
    if entries.isEmpty { return print("no copies on this host yet") }
    printTable(
        ["TIME", "VAULT", "FROM", "TO", "OUTCOME", "POINTS", "THERE", "COPIED", "DELETED", "SECONDS", "REASON"],
        entries.map { entry in
            [
                shownTime(entry.time), entry.vault, entry.from, entry.to, entry.outcome.rawValue, "\(entry.points)",
                "\(entry.pointsPresent)", Units.formatSize(entry.chunkBytes), "\(entry.deleted)",
                String(format: "%.1f", entry.seconds), entry.error ?? "-",
            ]
        })
}
