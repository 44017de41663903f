import Foundation
import VaultCore

/// One thing the mount shows.
enum Node: Hashable, Sendable {
    case root
    case vault(String)
    case policy(vault: String)
    case byId(vault: String)
    case byIdLink(vault: String, point: String)
    case server(vault: String, server: String)
    case history(vault: String, server: String)
    case latest(vault: String, server: String)
    case point(String)
    case pointJSON(String)
    case image(point: String, disk: String)
    /// `<point>/files/`: one folder per filesystem found on the point's disks.
    case files(point: String)
    /// `<point>/<disk>.part<N>.img`.
    case partitionImage(point: String, disk: String, partition: Int)
    /// A file or folder inside a filesystem under `files/` (its root is `files/<volume>`).
    case inside(volume: UInt32, inode: UInt64)
    /// `.restores/`, its folder for each instant restore, and in that the writable image
    /// and `status.json`.
    case restores
    case restoreFolder(String)
    case restoreImage(String)
    case restoreStatus(String)

    enum Kind { case directory, file, symlink, characterDevice, blockDevice, fifo, socket }

    /// The kind of the tree's own nodes; a node inside a filesystem has the kind its inode says.
    var kind: Kind? {
        switch self {
        case .root, .vault, .byId, .server, .point, .files, .restores, .restoreFolder: return .directory
        case .byIdLink, .latest: return .symlink
        case .policy, .history, .pointJSON, .image, .partitionImage, .restoreImage, .restoreStatus: return .file
        case .inside: return nil
        }
    }

    /// Whether the node belongs to `.restores/`, which the host's restores make, not the catalog.
    var isRestore: Bool {
        switch self {
        case .restores, .restoreFolder, .restoreImage, .restoreStatus: return true
        default: return false
        }
    }

    /// Whether the node never changes while it exists: cached by the kernel for long.
    var isImmutable: Bool {
        switch self {
        case .image, .partitionImage, .files, .inside: return true
        default: return false
        }
    }
}

/// The directory tree for one catalog snapshot: vaults, servers, points and their files.
/// Built once per refresh, then looked up without touching the catalog.
struct Tree: Sendable {
    private(set) var entries: [Node: [(name: String, node: Node)]] = [:]
    private var byName: [Node: [String: Node]] = [:]
    private(set) var links: [Node: String] = [:]
    private(set) var times: [Node: Date] = [:]
    let inventory: Inventory
    let points: [String: Point]
    let vaults: [String: Vault]

    /// `singleVault` shows that vault's content at the root (`-o vault=NAME`).
    init(_ inventory: Inventory, singleVault: String?, now: Date = Date()) {
        self.inventory = inventory
        // Whatever a catalog holds, never a trap: the first of a name given twice is kept.
        points = Dictionary(inventory.points.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        vaults = Dictionary(inventory.vaults.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let shown = inventory.vaults.filter { singleVault == nil || $0.name == singleVault }
        for vault in shown {
            let vaultNode: Node = singleVault == nil ? .vault(vault.name) : .root
            if singleVault == nil { add(.root, vault.name, vaultNode) }
            addVault(vault, at: vaultNode)
        }
        if entries[.root] == nil { entries[.root] = [] }
        times[.root] = inventory.points.map(\.startedAt).max() ?? inventory.vaults.map(\.createdAt).min() ?? now
    }

    private mutating func addVault(_ vault: Vault, at node: Node) {
        add(node, "policy.json", .policy(vault: vault.name))
        let byId = Node.byId(vault: vault.name)
        add(node, ".by-id", byId)
        let points = inventory.points.filter { $0.vaultId == vault.id }
        var serverNames = Set(inventory.servers.filter { $0.vaultId == vault.id }.map(\.name))
        serverNames.formUnion(points.map(\.serverName))
        for server in serverNames.sorted() {
            let serverNode = Node.server(vault: vault.name, server: server)
            add(node, server, serverNode)
            add(serverNode, "history.json", .history(vault: vault.name, server: server))
            let own = points.filter { $0.serverName == server }
            // A failed attempt shows (its point.json says why) until a point takes its name.
            let named = Dictionary(grouping: own, by: \.name).mapValues { group in
                group.first { $0.status != .failed } ?? group.last!
            }
            for point in own where named[point.name]?.id == point.id {
                let pointNode = Node.point(point.id)
                add(serverNode, point.name, pointNode)
                times[pointNode] = point.startedAt
                add(pointNode, "point.json", .pointJSON(point.id))
                if point.status == .active {
                    add(pointNode, "files", .files(point: point.id))
                    for disk in inventory.disks[point.id] ?? [] {
                        add(pointNode, "\(disk.disk).img", .image(point: point.id, disk: disk.disk))
                    }
                }
                let link = Node.byIdLink(vault: vault.name, point: point.id)
                add(byId, point.id, link)
                links[link] = "../\(server)/\(point.name)"
            }
            if let latest = own.last(where: { $0.status == .active }) {
                let link = Node.latest(vault: vault.name, server: server)
                add(serverNode, "latest", link)
                links[link] = latest.name
            }
            times[serverNode] = own.map(\.startedAt).max() ?? vault.createdAt
        }
        times[node] = points.map(\.startedAt).max() ?? vault.createdAt
        times[byId] = times[node]
    }

    private mutating func add(_ parent: Node, _ name: String, _ child: Node) {
        entries[parent, default: []].append((name, child))
        byName[parent, default: [:]][name] = child
    }

    func child(of parent: Node, named name: String) -> Node? { byName[parent]?[name] }

    func contains(_ node: Node) -> Bool {
        switch node {
        case .root: return true
        case .point(let id), .pointJSON(let id): return points[id] != nil
        case .image(let id, let disk), .partitionImage(let id, let disk, _):
            return points[id]?.status == .active && inventory.disks[id]?.contains { $0.disk == disk } == true
        case .files(let id): return points[id]?.status == .active
        case .byIdLink, .latest: return links[node] != nil
        default: return entries[node] != nil || times[node] != nil || isFileOfVault(node)
        }
    }

    private func isFileOfVault(_ node: Node) -> Bool {
        switch node {
        case .policy(let vault): return vaults[vault] != nil
        case .history(let vault, let server): return byName[.server(vault: vault, server: server)] != nil
        default: return false
        }
    }

    /// The time shown for a node: a point's time, or the newest point's time below it.
    func time(of node: Node) -> Date {
        switch node {
        case .pointJSON(let id), .image(let id, _), .partitionImage(let id, _, _), .files(let id):
            return points[id]?.startedAt ?? Date()
        case .byIdLink(_, let id): return points[id]?.startedAt ?? Date()
        default: return times[node] ?? times[.root] ?? Date()
        }
    }
}
