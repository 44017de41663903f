/// A disk of a point with its chain already applied: one reference per chunk position, so
/// reading any byte is a division and a lookup, whatever the depth of the chain.
public struct FlatImage: Sendable {
    public let size: Int64
    public let chunkSize: Int
    public let refs: [ChunkRef]

    /// Plain length of the chunk at `position` (the last one may be short).
    public func length(of position: Int) -> Int {
        let start = Int64(position) * Int64(chunkSize)
        return Int(min(Int64(chunkSize), size - start))
    }

    /// Bytes of the image held in non-zero chunks.
    public var dataBytes: Int64 {
        var total: Int64 = 0
        for (position, ref) in refs.enumerated() where ref != .zero { total += Int64(length(of: position)) }
        return total
    }

    /// The first offset at or after `offset` inside a non-zero chunk, or nil when only zeros follow.
    public func nextData(from offset: Int64) -> Int64? {
        guard offset < size else { return nil }
        var position = Int(offset / Int64(chunkSize))
        if refs[position] != .zero { return offset }
        position += 1
        while position < refs.count {
            if refs[position] != .zero { return Int64(position) * Int64(chunkSize) }
            position += 1
        }
        return nil
    }

    /// The first offset at or after `offset` inside a zero chunk, or the size (the implicit
    /// hole at the end).
    public func nextHole(from offset: Int64) -> Int64 {
        guard offset < size else { return size }
        var position = Int(offset / Int64(chunkSize))
        if refs[position] == .zero { return offset }
        position += 1
        while position < refs.count {
            if refs[position] == .zero { return Int64(position) * Int64(chunkSize) }
            position += 1
        }
        return size
    }
}

extension Repository {
    /// Applies a point's chain for one disk: the nearest full map, then each incremental map
    /// after it, in order.
    /// Sizes come from files that may be damaged (or from a `repository.json` edited since):
    /// a map's must match what the catalog recorded for its point and the repository's chunk
    /// size before any array is sized from it.
    func check(_ map: ChunkMap, point id: String, disk: String) throws {
        let recorded = try catalog.pointDisks(id).first { $0.disk == disk }?.size
        guard map.chunkSize == config.chunkSize, map.diskSize == recorded else {
            throw VaultError(
                .corrupt,
                "the map of point \(id) disk '\(disk)' gives \(map.diskSize) bytes in \(map.chunkSize)-byte chunks; the repository recorded \(recorded.map(String.init) ?? "no") bytes in \(config.chunkSize)-byte chunks"
            )
        }
    }

    public func flatten(point id: String, disk: String) throws -> FlatImage {
        let chain = try catalog.chain(endingAt: id)
        var pending: [ChunkMap] = []
        for point in chain.reversed() {
            let map = try maps.read(point: point.id, disk: disk)
            try check(map, point: point.id, disk: disk)
            pending.append(map)
            if map.kind == .full { break }
        }
        guard let base = pending.last, base.kind == .full else {
            throw VaultError(.corrupt, "point \(id) disk '\(disk)': its chain has no full map")
        }
        var refs = [ChunkRef](
            repeating: .zero, count: ChunkMap.positions(diskSize: base.diskSize, chunkSize: base.chunkSize))
        var size = base.diskSize
        for map in pending.reversed() {
            let count = ChunkMap.positions(diskSize: map.diskSize, chunkSize: map.chunkSize)
            if count < refs.count { refs.removeLast(refs.count - count) }
            if count > refs.count { refs.append(contentsOf: repeatElement(.zero, count: count - refs.count)) }
            for entry in map.entries { refs[entry.position] = entry.ref }
            size = map.diskSize
        }
        return FlatImage(size: size, chunkSize: base.chunkSize, refs: refs)
    }
}
