import ArgumentParser
import Foundation
import VaultCore

@main
struct Vaultctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vaultctl",
        abstract: "Back up servers' disks into a vaultfs repository, on a schedule or now, and manage what is kept.",
        version: "0.1.0",
        subcommands: [Init.self, VaultCommand.self, ServerCommand.self, Backup.self, PolicyCommand.self,
                      ScheduleCommand.self, RetentionCommand.self, Points.self, History.self, Delete.self,
                      Undelete.self, Purge.self, Export.self, Verify.self, Collect.self, Repair.self])

    /// Accepts `-R PATH` / `--repo PATH` before the subcommand too (`vaultctl -R /srv/backups
    /// points`), as the repository for every subcommand.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if let first = arguments.first {
            if (first == "-R" || first == "--repo"), arguments.count > 1 {
                setenv("VAULT_REPO", arguments[1], 1)
                arguments.removeFirst(2)
            } else if first.hasPrefix("--repo=") {
                setenv("VAULT_REPO", String(first.dropFirst("--repo=".count)), 1)
                arguments.removeFirst()
            }
        }
        main(arguments)
    }
}

/// `-R/--repo PATH`, or `VAULT_REPO`.
struct RepositoryOptions: ParsableArguments {
    @Option(name: [.customShort("R"), .customLong("repo")], help: "The repository (default: $VAULT_REPO).")
    var repo: String?

    func path() throws -> String {
        guard let path = repo ?? ProcessInfo.processInfo.environment["VAULT_REPO"], !path.isEmpty else {
            throw VaultError(.invalidArgument, "no repository given: use -R/--repo PATH or set VAULT_REPO")
        }
        return path
    }

    func open() throws -> Repository { try Repository(path: try path()) }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a new, empty repository.")

    @Argument(help: "Directory to create the repository in (new or empty).") var path: String
    @Option(help: "Chunk size, a power of two from 64K to 4M.") var chunkSize = "1M"
    @Option(help: "zstd compression level, 1-19.") var compressionLevel = 3
    @Option(help: "Let this group read the repository (default: only its owner can).") var group: String?

    func run() throws {
        guard let size = Units.parseSize(chunkSize) else { throw VaultError(.invalidArgument, "bad chunk size '\(chunkSize)'") }
        let repository = try Repository.create(at: path, chunkSize: size, compressionLevel: compressionLevel, group: group)
        print("created repository \(repository.root) (chunk size \(Units.formatSize(Int64(size))), zstd level \(compressionLevel))")
    }
}
