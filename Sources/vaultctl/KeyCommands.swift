import ArgumentParser
import Foundation
import VaultCore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show what kind of repository this is and what it holds.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Flag var json = false

    func run() throws {
        let repo = try repository.open()
        let info = try repo.info()
        if json { return printJSON(info) }
        print("repository:  \(info.path)")
        print("format:      \(info.format)")
        print("chunk size:  \(Units.formatSize(Int64(info.chunkSize))), zstd level \(info.compressionLevel)")
        print("encryption:  \(info.encryption)" + (info.keyLocation.map { " (key \($0))" } ?? ""))
        if let state = info.stateDirectory {
            print("state:       \(state) (catalog and locks)")
            print("readable by: whoever the bucket's policy lets read it")
        } else {
            print("readable by: \(info.group.map { "its owner and group \($0)" } ?? "its owner only")")
        }
        print(
            "gc grace:    \(Units.formatDuration(info.gcGraceSeconds)) (how long an unused chunk waits before gc removes it)"
        )
        print(
            "contents:    \(info.vaults) vault(s), \(info.servers) server(s), \(info.points) point(s), \(info.chunks) chunk(s), \(Units.formatSize(info.storedBytes)) stored"
        )
        if let reason = info.readOnly { print("read-only:   \(reason)") }
    }
}

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Manage the key of an encrypted repository.",
        subcommands: [ChangePassphrase.self, Export.self])

    struct ChangePassphrase: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Wrap the key under a new passphrase (from VAULT_NEW_PASSPHRASE or the prompt); no data is rewritten.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions

        func run() throws {
            let repo = try repository.open()
            let passphrase: String
            if let given = ProcessInfo.processInfo.environment["VAULT_NEW_PASSPHRASE"], !given.isEmpty {
                passphrase = given
            } else {
                guard isatty(STDIN_FILENO) == 1, let first = getpass("New passphrase: ").map({ String(cString: $0) }),
                    let second = getpass("Repeat it: ").map({ String(cString: $0) })
                else {
                    throw VaultError(
                        .invalidArgument, "give the new passphrase in VAULT_NEW_PASSPHRASE or run on a terminal")
                }
                guard first == second else {
                    throw VaultError(.invalidArgument, "the passphrases differ; nothing was changed")
                }
                passphrase = first
            }
            try repo.changePassphrase(to: passphrase)
            print("changed the passphrase of \(repo.location.name); the old one no longer opens it")
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Write the key to a new file (0600) for safekeeping: it works with --key-file and holds a paper form.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "A new file.") var file: String

        func run() throws {
            let repo = try repository.open()
            try repo.exportKey(to: file)
            print("wrote the key of \(repo.location.name) to \(file); whoever has it can read every backup")
        }
    }
}
