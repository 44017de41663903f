import Foundation
import Synchronization
import VaultCore
import VaultFiles

/// The files the mount makes rather than reads: a vault's policy.json, a server's
/// history.json and each point's point.json.
final class GeneratedFiles: Sendable {
    private let repository: Repository
    private let files: PointFiles
    /// history.json of each server, made once per tree: `ls -l` asks for its size with every
    /// listing, and the whole history takes a while to encode.
    private let histories = Mutex<(built: Date, files: [Node: [UInt8]])>((.distantPast, [:]))

    /// The location this repository is the mirror of, when it is one: every point is a copy.
    private let copyOf: String?

    init(repository: Repository, files: PointFiles, copyOf: String? = nil) {
        self.repository = repository
        self.files = files
        self.copyOf = copyOf
    }

    /// The bytes of the generated file `node` of `tree`, which was read at `built`.
    func content(of node: Node, in tree: Tree, built: Date) throws -> [UInt8] {
        switch node {
        case .policy(let vault):
            guard let record = tree.vaults[vault] else { throw VaultError(.notFound, "no vault \(vault)") }
            return JSON.encode(PolicyView(record))
        case .history(let vault, let server):
            if let cached = histories.withLock({ $0.built == built ? $0.files[node] : nil }) { return cached }
            let bytes = JSON.encode(try repository.history().filter { $0.vault == vault && $0.server == server })
            histories.withLock { state in
                if state.built != built { state = (built, [:]) }
                state.files[node] = bytes
            }
            return bytes
        case .pointJSON(let id):
            guard let point = try repository.catalog.point(id: id) else {
                throw VaultError(.notFound, "no point \(id)")
            }
            var view = try repository.view(of: point)
            if let copyOf { view.copyOf = PointView.CopyOrigin(location: copyOf, point: point.id) }
            if point.status == .active {
                for index in view.disks.indices {
                    view.disks[index].contents = try? files.contents(point: id, disk: view.disks[index].name).view
                }
            }
            return JSON.encode(view)
        default:
            throw VaultError(.invalidArgument, "not a generated file")
        }
    }
}
