import Foundation

extension Repository {
    /// For each of `points`, the stored bytes of the chunks its own maps hold and no other
    /// point's do: what deleting it alone would free, once purged and collected (as borg's
    /// "unique size"). Every point that still holds chunks counts, soft-deleted ones too. A
    /// full that incrementals depend on cannot be deleted alone; its figure still says what
    /// it holds by itself. Reads every map of every such point and lists the stored chunks
    /// once, so it is asked for (`points --unique`), not shown by default.
    public func uniqueBytes(of points: [Point]) throws -> [String: Int64] {
        let wanted = Set(points.map(\.id))
        var holder: [ChunkHash: String] = [:]
        var shared: Set<ChunkHash> = []
        for point in try catalog.allPoints() where point.deletion != .deleted && point.status == .active {
            for disk in try catalog.pointDisks(point.id) {
                for entry in try maps.read(point: point.id, disk: disk.disk).entries {
                    guard case .data(let hash) = entry.ref, !shared.contains(hash) else { continue }
                    if let first = holder[hash] {
                        if first != point.id { shared.insert(hash) }
                    } else {
                        holder[hash] = point.id
                    }
                }
            }
        }
        let sizes = Dictionary(
            try chunks.objects.list(prefix: ChunkStore.prefix).map { ($0.key, $0.size) }, uniquingKeysWith: max)
        var unique = Dictionary(uniqueKeysWithValues: wanted.map { ($0, Int64(0)) })
        for (hash, point) in holder where wanted.contains(point) && !shared.contains(hash) {
            unique[point, default: 0] += sizes[chunks.key(for: hash)] ?? 0
        }
        return unique
    }
}
