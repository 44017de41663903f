import ArgumentParser
import Foundation
import VaultCore

struct VaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault", abstract: "Create, list, show and remove vaults.",
        subcommands: [Create.self, List.self, Show.self, Remove.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a vault (optionally with its policy).")
        @OptionGroup var repository: RepositoryOptions
        @Argument var name: String
        @OptionGroup var policy: PolicyOptions

        func run() throws {
            let repo = try repository.open()
            try repo.createVault(named: name, policy: try policy.policy(now: Date()), now: Date())
            print("created vault \(name)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List vaults.")
        @OptionGroup var repository: RepositoryOptions
        @Flag var json = false

        func run() throws {
            let repo = try repository.open()
            let vaults = try repo.catalog.vaults()
            if json {
                return printJSON(try vaults.map { VaultView($0, servers: try repo.catalog.servers(inVault: $0.id!).map(\.name)) })
            }
            printTable(["VAULT", "SERVERS", "POLICY"], try vaults.map { vault in
                [vault.name, "\(try repo.catalog.servers(inVault: vault.id!).count)", policyText(vault.policy)]
            })
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a vault, its policy and servers.")
        @OptionGroup var repository: RepositoryOptions
        @Argument var name: String
        @Flag var json = false

        func run() throws {
            let repo = try repository.open()
            let vault = try repo.catalog.vault(named: name)
            if json { return printJSON(VaultView(vault, servers: try repo.catalog.servers(inVault: vault.id!).map(\.name))) }
            print("vault:   \(vault.name)")
            print("policy:  \(policyText(vault.policy))")
            print("servers: \(try repo.catalog.servers(inVault: vault.id!).map(\.name).joined(separator: ", "))")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an empty vault.")
        @OptionGroup var repository: RepositoryOptions
        @Argument var name: String

        func run() throws {
            try repository.open().removeVault(named: name)
            print("removed vault \(name)")
        }
    }
}

func policyText(_ policy: Policy?) -> String {
    guard let policy else { return "none (manual backups only)" }
    return "start \(policy.startText), every \(policy.everyHours)h, \(policy.incrementals) incrementals between fulls, keep \(policy.keepFulls) fulls"
}

struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server", abstract: "Add, list, show, move and remove servers.",
        subcommands: [Add.self, List.self, Show.self, SetHooks.self, Move.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a server and its disks.")
        @OptionGroup var repository: RepositoryOptions
        @Argument var name: String
        @Option(help: "The vault the server belongs to.") var vault: String?
        @Option(name: .customLong("disk"), help: "A disk as NAME=PATH (block device or image file); repeat for more.")
        var disks: [String] = []
        @Option(help: "Shell command run before the disks are read (kept in this host's /etc/vaultfs/hooks).")
        var freezeCommand: String?
        @Option(help: "Shell command run after the disks are read (kept in this host's /etc/vaultfs/hooks).")
        var thawCommand: String?

        func run() throws {
            let parsed = try disks.map { text -> (name: String, path: String) in
                guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
                    throw VaultError(.invalidArgument, "bad --disk '\(text)': use NAME=PATH")
                }
                let path = String(text[text.index(after: eq)...])
                let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
                return (String(text[..<eq]), absolute)
            }
            try repository.open().addServer(named: name, vault: vault, disks: parsed,
                                            hooks: Hooks(freeze: freezeCommand, thaw: thawCommand), now: Date())
            for disk in parsed where !FileManager.default.fileExists(atPath: disk.path) {
                FileHandle.standardError.write(Data("warning: disk '\(disk.name)' (\(disk.path)) does not exist yet; backups of \(name) fail until it does\n".utf8))
            }
            print("added server \(name)" + (vault.map { " to vault \($0)" } ?? ""))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List servers.")
        @OptionGroup var repository: RepositoryOptions
        @Flag var json = false

        func run() throws {
            let repo = try repository.open()
            let vaults = Dictionary(uniqueKeysWithValues: try repo.catalog.vaults().map { ($0.id!, $0.name) })
            let views = try repo.catalog.servers().map { server in
                ServerView(server, vault: server.vaultId.flatMap { vaults[$0] }, disks: try repo.catalog.disks(ofServer: server.id!),
                           hooks: try? HookFiles.standard.hooks(server: server.name))
            }
            if json { return printJSON(views) }
            printTable(["SERVER", "VAULT", "DISKS"], views.map { [$0.server, $0.vault ?? "-", $0.disks.map(\.name).joined(separator: ",")] })
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a server, its disks and hooks.")
        @OptionGroup var repository: RepositoryOptions
        @Argument var name: String
        @Flag var json = false

        func run() throws {
            let repo = try repository.open()
            let server = try repo.catalog.server(named: name)
            let files = HookFiles.standard
            // A user who may not read this host's hooks (they are root's) still sees the rest.
            let hooks: Hooks?, unreadable: String?
            do {
                (hooks, unreadable) = (try files.hooks(server: server.name), nil)
            } catch {
                (hooks, unreadable) = (nil, "\(error)")
            }
            if json {
                let vault = try server.vaultId.flatMap { try repo.catalog.vault(id: $0)?.name }
                return printJSON(ServerView(server, vault: vault, disks: try repo.catalog.disks(ofServer: server.id!), hooks: hooks))
            }
            print("server: \(server.name)")
            print("vault:  \(try server.vaultId.flatMap { try repo.catalog.vault(id: $0)?.name } ?? "-")")
            for disk in try repo.catalog.disks(ofServer: server.id!) { print("disk:   \(disk.name)=\(disk.path)") }
            if let freeze = hooks?.freeze { print("freeze: \(freeze)") }
            if let thaw = hooks?.thaw { print("thaw:   \(thaw)") }
            if let unreadable {
                print("hooks:  cannot be read here: \(unreadable)")
            } else if hooks != nil {
                print("hooks:  from \(files.path(server: server.name))")
            } else if server.hooks {
                print("hooks:  the repository says it has hooks, but this host has none (\(files.path(server: server.name))): its backups fail until they are set")
            }
        }
    }

    struct SetHooks: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hooks",
            abstract: "Set a server's freeze and thaw commands on this host.",
            discussion: """
                Hooks are host configuration: they are kept in /etc/vaultfs/hooks/SERVER.conf (owned by \
                root, writable by root alone), never in the repository, which records only that the \
                server has hooks. A command given here replaces the one kept; --none removes both.
                """)
        @OptionGroup var repository: RepositoryOptions
        @Argument var name: String
        @Option(help: "Shell command run before the disks are read.") var freezeCommand: String?
        @Option(help: "Shell command run after the disks are read.") var thawCommand: String?
        @Flag(help: "Remove the server's hooks: its backups then run without them.") var none = false

        func validate() throws {
            if none == (freezeCommand != nil || thawCommand != nil) {
                throw ValidationError("give --freeze-command and/or --thaw-command, or --none")
            }
        }

        func run() throws {
            let files = HookFiles.standard
            let repo = try repository.open()
            var hooks = Hooks()
            if !none {
                let kept = try files.hooks(server: name) ?? Hooks()
                hooks = Hooks(freeze: freezeCommand ?? kept.freeze, thaw: thawCommand ?? kept.thaw)
            }
            try repo.setHooks(hooks, server: name, hookFiles: files)
            print(hooks.isEmpty ? "removed the hooks of server \(name)" : "set the hooks of server \(name) in \(files.path(server: name))")
        }
    }

    struct Move: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move a server to another vault; its points stay where they are.")
        @OptionGroup var repository: RepositoryOptions
        @Argument var name: String
        @Option var vault: String

        func run() throws {
            try repository.open().moveServer(named: name, toVault: vault)
            print("moved server \(name) to vault \(vault)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a server that has no points left.")
        @OptionGroup var repository: RepositoryOptions
        @Argument var name: String

        func run() throws {
            try repository.open().removeServer(named: name)
            print("removed server \(name)")
        }
    }
}
