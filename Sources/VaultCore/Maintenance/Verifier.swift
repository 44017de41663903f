import Dispatch
import Foundation
import Synchronization

/// Reads back every chunk that points use and checks it against its address, every chunk map
/// against the repository's settings and the catalog, and every manifest (what a rebuild of
/// the catalog depends on) against the catalog; reports what is damaged and which points it
/// affects.
public struct Verifier {
    public let repository: Repository

    public init(repository: Repository) { self.repository = repository }

    public struct Problem: Sendable {
        public var what: String
        public var reason: String
    }

    public struct Report: Sendable {
        public var points: Int
        public var chunks: Int
        public var problems: [Problem]
        /// Points with a damaged chunk or map anywhere in their chain.
        public var affected: [Point]
        public var isClean: Bool { problems.isEmpty }
    }

    /// Verifies the points of one server, or all points (soft-deleted ones too: they can be restored).
    public func verify(server: Int64? = nil, progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }) throws
        -> Report
    {
        let points = try repository.catalog.points(server: server, includeSoftDeleted: true).filter {
            $0.status == .active
        }
        var problems: [Problem] = []
        var badMaps = Set<String>()
        var hashes = Set<ChunkHash>()
        var chains: [String: [String]] = [:]
        for point in points {
            for disk in try repository.catalog.pointDisks(point.id) {
                do {
                    let map = try repository.maps.read(point: point.id, disk: disk.disk)
                    try repository.check(map, point: point.id, disk: disk.disk)
                    for case .data(let hash) in map.entries.map(\.ref) { hashes.insert(hash) }
                } catch {
                    badMaps.insert(point.id)
                    problems.append(
                        Problem(what: "map of \(point.serverName)/\(point.name) disk \(disk.disk)", reason: "\(error)"))
                }
            }
            chains[point.id] = try repository.catalog.chain(endingAt: point.id).map(\.id)
        }
        if server == nil { problems += try manifestProblems() }
        let meter = ProgressMeter(
            label: "chunks of \(points.count) point\(points.count == 1 ? "" : "s")", unit: .chunks, report: progress)
        meter.addTotal(Int64(hashes.count))
        let damaged = check(Array(hashes), meter: meter)
        meter.finish()
        problems += damaged.map { Problem(what: "chunk \($0.key)", reason: $0.value) }
        var affected: [Point] = []
        for point in points {
            if chains[point.id, default: []].contains(where: badMaps.contains) {
                affected.append(point)
                continue
            }
            guard !damaged.isEmpty else { continue }
            let uses = try repository.catalog.pointDisks(point.id).contains { disk in
                ((try? repository.flatten(point: point.id, disk: disk.disk))?.refs ?? []).contains {
                    if case .data(let hash) = $0 { return damaged[hash] != nil }
                    return false
                }
            }
            if uses { affected.append(point) }
        }
        return Report(points: points.count, chunks: hashes.count, problems: problems, affected: affected)
    }

    /// What a rebuild of the catalog from the manifests would get wrong: a manifest missing,
    /// damaged or saying other than the catalog for a restorable point, vault or server.
    private func manifestProblems() throws -> [Problem] {
        var problems: [Problem] = []
        let manifests = repository.manifests
        let catalog = repository.catalog
        for point in try catalog.points(server: nil, includeSoftDeleted: true) where point.status == .active {
            let what = "manifest of point \(point.serverName)/\(point.name) (\(point.id))"
            do {
                guard let manifest = try manifests.point(point.id) else {
                    problems.append(
                        Problem(what: what, reason: "missing: a rebuild of the catalog would lose this point"))
                    continue
                }
                let disks = try catalog.pointDisks(point.id)
                if manifest.point.status != point.status || manifest.point.deletion != point.deletion
                    || manifest.point.parentId != point.parentId || manifest.disks.map(\.disk) != disks.map(\.disk)
                    || manifest.disks.map(\.size) != disks.map(\.size)
                {
                    problems.append(
                        Problem(
                            what: what,
                            reason:
                                "it says other than the catalog (status, parent or disks): a rebuild would restore it wrongly"
                        ))
                }
            } catch {
                problems.append(
                    Problem(what: what, reason: "\(error); a rebuild of the catalog fails until it is fixed"))
            }
        }
        for (kind, names, read) in [
            ("vault", try catalog.vaults().map(\.name), { (name: String) in try manifests.vault(name) != nil }),
            ("server", try catalog.servers().map(\.name), { (name: String) in try manifests.server(name) != nil }),
        ] {
            for name in names {
                do {
                    if try !read(name) {
                        problems.append(
                            Problem(
                                what: "manifest of \(kind) \(name)",
                                reason: "missing: a rebuild of the catalog would lose this \(kind)"))
                    }
                } catch {
                    problems.append(
                        Problem(
                            what: "manifest of \(kind) \(name)",
                            reason: "\(error); a rebuild of the catalog fails until it is fixed"))
                }
            }
        }
        return problems
    }

    /// Checks chunks on every core (or with as many requests in flight as the store takes);
    /// returns the damaged ones with the reason.
    private func check(_ hashes: [ChunkHash], meter: ProgressMeter) -> [ChunkHash: String] {
        let next = Atomic<Int>(0)
        let damaged = Mutex<[ChunkHash: String]>([:])
        let store = repository.chunks
        runWorkers(repository.objects.writers) { _ in
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                guard i < hashes.count else { break }
                if let reason = store.verify(hashes[i]) { damaged.withLock { $0[hashes[i]] = reason } }
                meter.advance(1)
            }
        }
        return damaged.withLock { $0 }
    }
}

extension ChunkStore {
    /// Reads, decodes and checks one whole chunk at whatever length its header gives (at
    /// most 4 MiB); nil when it is whole.
    func verify(_ hash: ChunkHash) -> String? {
        do {
            let file = try ChunkReader(store: self, hash: hash)
            defer { file.close() }
            try file.checkWhole(hash)
            return nil
        } catch let error as VaultError {
            return error.message
        } catch {
            return "\(error)"
        }
    }
}
