import ArgumentParser
import Foundation
import VaultCore

struct VaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault", abstract: "Create, list, show and remove vaults.",
        subcommands: [Create.self, List.self, Show.self, VaultSet.self, Remove.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a vault (optionally with its policy).")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The new vault's name: letters, digits, '-', '_' and '.'.") var name: String
        @OptionGroup var policy: PolicyOptions

        func run() throws {
            try repository.checkNew(.vault(name))
            let repo = try repository.openToWrite()
            try repo.createVault(named: name, policy: try policy.policy(now: Date()), now: Date())
            print("created vault \(name)" + (try repository.namedLocation().map { " in location \($0.name)" } ?? ""))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List vaults.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Flag var json = false

        func run() throws {
            var views: [VaultView] = []
            var policies: [String] = []
            let locations = try Locations.load()
            let listing = try repository.eachRepository { repo, location in
                for vault in try repo.catalog.vaults() {
                    let servers = try repo.catalog.servers(inVault: vault.id).map(\.name)
                    let view = VaultView(vault, servers: servers, location: location, locations: locations)
                    views.append(view)
                    policies.append(
                        view.isCopy == true
                            ? "a copy (kept by its copy policy)"
                            : policyText(vault.policy) + (view.copy.map { "; \(copyText($0))" } ?? ""))
                }
            }
            if json {
                printJSON(views)
            } else {
                printTable(
                    (listing.locations ? ["LOCATION"] : []) + ["VAULT", "SERVERS", "POLICY"],
                    zip(views, policies).map { view, policy in
                        (listing.locations ? [view.location ?? "-"] : []) + [
                            view.vault, "\(view.servers.count)", policy,
                        ]
                    })
            }
            if !listing.complete { throw ExitCode.failure }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a vault, its policy and servers.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The vault.") var name: String
        @Flag var json = false

        func run() throws {
            let repo = try repository.open(.vault(name))
            let vault = try repo.catalog.vault(named: name)
            let location = try repository.namedLocation(for: .vault(name))
            let view = VaultView(
                vault, servers: try repo.catalog.servers(inVault: vault.id).map(\.name), location: location?.name,
                locations: try Locations.load())
            if json { return printJSON(view) }
            print("vault:    \(vault.name)")
            if let location { print("location: \(location.name)" + (view.isCopy == true ? " (a copy)" : "")) }
            if view.isCopy == true, let source = location?.mirrorOf {
                print("policy:   a copy of vault \(vault.name) in location \(source), kept by its copy policy")
            } else {
                print("policy:   \(policyText(vault.policy))")
            }
            if let copy = view.copy { print("copy:     \(copyText(copy))") }
            print("servers:  \(try repo.catalog.servers(inVault: vault.id).map(\.name).joined(separator: ", "))")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an empty vault.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The vault (it must hold no servers or points).") var name: String

        func run() throws {
            try repository.open(.vault(name)).removeVault(named: name)
            print("removed vault \(name)")
        }
    }
}

struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server", abstract: "Add, list, show, move and remove servers.",
        subcommands: [Add.self, List.self, Show.self, SetHooks.self, Adopt.self, Move.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a server and its disks.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The new server's name: letters, digits, '-', '_' and '.'.") var name: String
        @Option(help: "The vault the server belongs to.") var vault: String?
        @Option(
            name: .customLong("disk"),
            help: "A disk as NAME=PATH (block device or image file) or NAME=rbd:POOL/IMAGE (Ceph RBD); repeat for more."
        )
        var disks: [String] = []
        @Option(help: "The Ceph configuration file for rbd: disks (default: Ceph's, /etc/ceph/ceph.conf).")
        var cephConf: String?
        @Option(help: "The Ceph client id for rbd: disks, as in client.ID (default: admin).")
        var cephId: String?
        @Option(help: "The qemu dirty bitmap that tracks the changes of nbd+unix: disks (with --qmp).")
        var bitmap: String?
        @Option(help: "qemu's QMP socket, through which each point clears the dirty bitmap (with --bitmap).")
        var qmp: String?
        @Option(help: "Shell command run before the disks are read (kept in this host's /etc/vaultfs/servers).")
        var freezeCommand: String?
        @Option(help: "Shell command run after the disks are read (kept in this host's /etc/vaultfs/servers).")
        var thawCommand: String?

        func run() throws {
            guard (bitmap == nil) == (qmp == nil) else {
                throw VaultError(
                    .invalidArgument,
                    "--bitmap and --qmp go together: vaultctl clears the bitmap through qemu's QMP socket")
            }
            let parsed = try disks.map { text -> (name: String, path: String) in
                guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
                    throw VaultError(.invalidArgument, "bad --disk '\(text)': use NAME=PATH")
                }
                let path = String(text[text.index(after: eq)...])
                let absolute =
                    path.hasPrefix("/") || path.hasPrefix(RbdSpec.prefix) || path.hasPrefix("nbd")
                    ? path : FileManager.default.currentDirectoryPath + "/" + path
                return (String(text[..<eq]), absolute)
            }
            try repository.checkNew(.server(name))
            try repository.openToWrite(vault.map { .vault($0) }).addServer(
                named: name, vault: vault, disks: parsed,
                hooks: Hooks(freeze: freezeCommand, thaw: thawCommand), ceph: CephAccess(conf: cephConf, id: cephId),
                bitmap: bitmap.map { DirtyBitmap(name: $0, qmp: qmp ?? "") }, now: Date())
            for disk in parsed where disk.path.hasPrefix("/") && !FileManager.default.fileExists(atPath: disk.path) {
                FileHandle.standardError.write(
                    Data(
                        "warning: disk '\(disk.name)' (\(disk.path)) does not exist yet; backups of \(name) fail until it does\n"
                            .utf8))
            }
            print("added server \(name)" + (vault.map { " to vault \($0)" } ?? ""))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List servers.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Flag var json = false

        func run() throws {
            var views: [ServerView] = []
            let locations = try Locations.load()
            let listing = try repository.eachRepository { repo, location in
                let vaults = Dictionary(uniqueKeysWithValues: try repo.catalog.vaults().map { ($0.id, $0.name) })
                views += try repo.catalog.servers().map { server in
                    var view = ServerView(
                        server, vault: server.vaultId.flatMap { vaults[$0] },
                        disks: try repo.catalog.disks(ofServer: server.id),
                        hooks: try? repo.hostHooks(server.name), location: location)
                    if let location, let locations { view.isCopy = locations.isMirror(location) }
                    return view
                }
            }
            if json {
                printJSON(views)
            } else {
                printTable(
                    (listing.locations ? ["LOCATION"] : []) + ["SERVER", "VAULT", "DISKS"],
                    views.map {
                        (listing.locations ? [$0.location ?? "-"] : [])
                            + [
                                $0.server, ($0.vault ?? "-") + ($0.isCopy == true ? " (a copy)" : ""),
                                $0.disks.map(\.name).joined(separator: ","),
                            ]
                    })
            }
            if !listing.complete { throw ExitCode.failure }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a server, its disks and hooks.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The server.") var name: String
        @Flag var json = false

        func run() throws {
            let repo = try repository.open(.server(name))
            let server = try repo.catalog.server(named: name)
            let files = HostServers.standard
            // A user who may not read this host's servers (they are root's) still sees the rest.
            let here: HostServer?
            let unreadable: String?
            do {
                (here, unreadable) = (try files.server(server.name), nil)
            } catch {
                (here, unreadable) = (nil, "\(error)")
            }
            // Hooks and the rest of a file that is another repository's are not this server's.
            let mine = here.flatMap { $0.repository == repo.config.id ? $0 : nil }
            let hooks = mine.flatMap { $0.hooks.isEmpty ? nil : $0.hooks }
            if json {
                let vault = try server.vaultId.flatMap { try repo.catalog.vault(id: $0)?.name }
                return printJSON(
                    ServerView(
                        server, vault: vault, disks: try repo.catalog.disks(ofServer: server.id), hooks: hooks,
                        here: mine))
            }
            let disks = try repo.catalog.disks(ofServer: server.id)
            print("server: \(server.name)")
            print("vault:  \(try server.vaultId.flatMap { try repo.catalog.vault(id: $0)?.name } ?? "-")")
            for disk in disks { print("disk:   \(disk.name)=\(disk.path)") }
            if let freeze = hooks?.freeze { print("freeze: \(freeze)") }
            if let thaw = hooks?.thaw { print("thaw:   \(thaw)") }
            if let mine, mine.ceph != CephAccess() {
                print("ceph:   \(mine.ceph.conf ?? "/etc/ceph/ceph.conf"), client.\(mine.ceph.id ?? "admin")")
            }
            if let bitmap = mine?.bitmap {
                print("bitmap: \(bitmap.name)-<point id>, kept through QMP at \(bitmap.qmp)")
            }
            if let unreadable {
                print("here:   cannot be read: \(unreadable)")
            } else if let here, here.repository != repo.config.id {
                print(
                    here.repository.map {
                        "here:   set up for another repository (\($0)); 'vaultctl server adopt \(server.name)' moves it to this one"
                    }
                        ?? "here:   set up by an older vaultctl, for no repository: 'vaultctl server adopt \(server.name)' after checking the disks"
                )
            } else if let here {
                let same = Set(here.disks) == Set(disks.map { HostServer.Disk(name: $0.name, path: $0.path) })
                print(
                    same
                        ? "here:   set up (\(files.path(server: server.name)))"
                        : "here:   set up with other disks: \(here.disks.map { "\($0.name)=\($0.path)" }.joined(separator: ", ")); backups are refused until 'vaultctl server adopt \(server.name)'"
                )
            } else {
                print(
                    "here:   not set up on this host: 'vaultctl server adopt \(server.name)' reads the disks above here"
                )
            }
            if unreadable == nil, hooks == nil, server.hooks {
                print(
                    "hooks:  the repository says it has hooks, but this host has none (\(files.path(server: server.name))): its backups fail until they are set"
                )
            }
        }
    }

    struct SetHooks: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hooks",
            abstract: "Set a server's freeze and thaw commands on this host.",
            discussion: """
                Hooks are host configuration: they are kept in /etc/vaultfs/servers/SERVER.conf (owned by \
                root, writable by root alone) with the server's disks, never in the repository, which \
                records only that the server has hooks. A command given here replaces the one kept; \
                --none removes both. The server must be set up on this host (server add or server adopt).
                """)
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The server.") var name: String
        @Option(help: "Shell command run before the disks are read.") var freezeCommand: String?
        @Option(help: "Shell command run after the disks are read.") var thawCommand: String?
        @Flag(help: "Remove the server's hooks: its backups then run without them.") var none = false

        func validate() throws {
            if none == (freezeCommand != nil || thawCommand != nil) {
                throw ValidationError("give --freeze-command and/or --thaw-command, or --none")
            }
        }

        func run() throws {
            let files = HostServers.standard
            let repo = try repository.open(.server(name))
            var hooks = Hooks()
            if !none {
                let kept = try files.hooks(server: name) ?? Hooks()
                hooks = Hooks(freeze: freezeCommand ?? kept.freeze, thaw: thawCommand ?? kept.thaw)
            }
            try repo.setHooks(hooks, server: name, host: files)
            print(
                hooks.isEmpty
                    ? "removed the hooks of server \(name)"
                    : "set the hooks of server \(name) in \(files.path(server: name))")
        }
    }

    struct Adopt: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Back a server up from this host, reading the disks the repository names.",
            discussion: """
                A host reads only the disks it was given (server add, or this command), kept in \
                /etc/vaultfs/servers/SERVER.conf, never paths from the repository, which another host \
                of a shared bucket, or anyone who can write the repository, may change. Run this for \
                a server added on another host, for the servers of a repository made by a vaultctl \
                before this rule (--all), or after a server's disks were changed elsewhere. Check the \
                paths first: they are printed, and each is read as root.
                """)
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The servers to adopt.") var names: [String] = []
        @Flag(help: "Every server of the repository.") var all = false

        func validate() throws {
            if all == !names.isEmpty { throw ValidationError("give server names, or --all") }
        }

        func run() throws {
            let repo = try repository.open(names.count == 1 ? .server(names[0]) : nil)
            for name in all ? try repo.catalog.servers().map(\.name) : names {
                let disks = try repo.adoptServer(named: name)
                print(
                    "server \(name) is backed up from this host, reading \(disks.map { "\($0.name)=\($0.path)" }.joined(separator: ", "))"
                )
            }
        }
    }

    struct Move: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a server to another vault; its points stay where they are.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The server.") var name: String
        @Option var vault: String

        func run() throws {
            try repository.open(.server(name)).moveServer(named: name, toVault: vault)
            print("moved server \(name) to vault \(vault)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a server that has no points left.")
        @OptionGroup(title: "Repository options") var repository: RepositoryOptions
        @Argument(help: "The server.") var name: String

        func run() throws {
            try repository.open(.server(name)).removeServer(named: name)
            print("removed server \(name)")
        }
    }
}
