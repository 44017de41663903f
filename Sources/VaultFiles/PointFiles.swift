import Synchronization
import VaultCore

/// The files inside points: each disk looked at once, its filesystems kept open, shared by
/// every reader of a mount (or by one command). Bounded: the disks looked at longest ago
/// are closed first; open files keep what they use.
public final class PointFiles: Sendable {
    /// Opens one disk of a point for reading (the mount leases its chain).
    public typealias Opener = @Sendable (_ point: String, _ disk: String) throws -> any ByteSource

    private let open: Opener
    /// What the volumes' directory listings are counted against, if anything.
    private let memory: ChunkCache?
    private let kept = Mutex(LRUCache<String, DiskContents>())
    /// Disks kept open at once; each holds its flattened image and filesystem metadata.
    static let keptDisks = 64

    /// `memory`: the budget the listings of the files inside points count against (the
    /// chunk cache the disks are read through), so they and the frames share it.
    public init(memory: ChunkCache? = nil, open: @escaping Opener) {
        self.memory = memory
        self.open = open
    }

    /// What a point's disk holds; looked at on first use, then kept.
    public func contents(point: String, disk: String) throws -> DiskContents {
        let key = "\(point)/\(disk)"
        if let found = kept.withLock({ $0.value(for: key) }) { return found }
        let contents = DiskContents.probe(disk: disk, source: try open(point, disk), memory: memory)
        return kept.withLock { disks in
            if let raced = disks.value(for: key) { return raced }
            disks.insert(contents, for: key, cost: 1)
            disks.evict(downTo: Self.keptDisks)
            return contents
        }
    }

    /// The volume named `name` (`root`, `data.part1`) of a point's disk.
    public func volume(point: String, disk: String, name: String) throws -> Volume {
        guard let volume = try contents(point: point, disk: disk).volumes[name] else {
            throw VaultError(.notFound, "no filesystem \(name) shown in point \(point)")
        }
        return volume
    }

    /// Partition `number` of a point's disk, as bytes of its own.
    public func partition(point: String, disk: String, number: Int) throws -> any ByteSource {
        let contents = try contents(point: point, disk: disk)
        guard let span = contents.partitions[number] else {
            throw VaultError(.notFound, "disk \(disk) has no partition \(number)")
        }
        return SliceSource(contents.source, offset: span.offset, length: span.size)
    }

    /// Closes what is kept of points no longer shown (deleted), releasing their leases.
    public func keep(points: Set<String>) {
        kept.withLock { disks in disks.removeAll { !points.contains(String($0.prefix { $0 != "/" })) } }
    }
}

extension PointFiles {
    /// The filesystems of a point's command-line readers: every disk opened with a lease
    /// held for as long as the reader lives, read through `cache`.
    public static func reading(_ repository: Repository, cache: ChunkCache) -> PointFiles {
        PointFiles(memory: cache) { point, disk in
            let (image, lease) = try repository.openImage(point: point, disk: disk)
            return LeasedImage(reader: ImageReader(image: image, cache: cache), lease: lease)
        }
    }

    /// The volume a user means: `partition` of `disk`, the disk's own filesystem, or the
    /// only filesystem the point holds. Says what there is when the choice is unclear.
    public func select(point: String, disks: [String], disk: String?, partition: Int?) throws -> Volume {
        if let disk, !disks.contains(disk) {
            throw VaultError(.notFound, "the point has no disk '\(disk)' (it has: \(disks.joined(separator: ", ")))")
        }
        let candidates = disk.map { [$0] } ?? disks
        if let partition {
            guard let disk = disk ?? (candidates.count == 1 ? candidates[0] : nil) else {
                throw VaultError(
                    .invalidArgument, "the point has disks \(disks.joined(separator: ", ")); say which with --disk")
            }
            let name = "\(disk).part\(partition)"
            let contents = try contents(point: point, disk: disk)
            guard let view = contents.view.volumes.first(where: { $0.name == name }) else {
                let numbers = contents.partitions.keys.sorted().map(String.init)
                throw VaultError(
                    .notFound,
                    "disk \(disk) has no partition \(partition)"
                        + (numbers.isEmpty
                            ? " (it has no partition table)" : " (it has: \(numbers.joined(separator: ", ")))"))
            }
            guard let volume = contents.volumes[name] else {
                throw VaultError(.unsupportedFormat, "\(name): \(view.reason ?? "not readable")")
            }
            return volume
        }
        var shown: [Volume] = []
        var reasons: [String] = []
        for disk in candidates {
            let contents = try contents(point: point, disk: disk)
            for view in contents.view.volumes {
                if let volume = contents.volumes[view.name] {
                    shown.append(volume)
                } else {
                    reasons.append("\(view.name): \(view.reason ?? "not readable")")
                }
            }
        }
        if shown.count == 1 { return shown[0] }
        if shown.isEmpty {
            throw VaultError(
                .unsupportedFormat, "no filesystem vaultfs reads in this point (\(reasons.joined(separator: "; ")))")
        }
        throw VaultError(
            .invalidArgument,
            "the point holds several filesystems (\(shown.map(\.name).joined(separator: ", "))); choose one with --disk and --partition"
        )
    }
}

/// A point's disk read by a command, with the lease that keeps its chunks while it reads.
public struct LeasedImage: ByteSource {
    public let reader: ImageReader
    let lease: ReaderLease?
    public var size: Int64 { reader.size }

    public func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        try reader.read(at: offset, into: destination)
    }
}
