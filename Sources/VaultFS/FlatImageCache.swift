import Synchronization
import VaultCore

/// Flattened images kept for reopening, least recently used evicted first, bounded by chunk
/// positions (about 40 bytes each) rather than by count, so a few huge disks cannot exhaust
/// memory. Open files hold their own image and are unaffected by eviction.
struct FlatImageCache {
    /// About 160 MB of chunk references.
    static let positionBudget = 4 << 20

    private var entries: [String: (image: FlatImage, tick: UInt64)] = [:]
    private var positions = 0
    private var tick: UInt64 = 0

    mutating func image(for key: String) -> FlatImage? {
        guard let entry = entries[key] else { return nil }
        tick += 1
        entries[key] = (entry.image, tick)
        return entry.image
    }

    mutating func insert(_ image: FlatImage, for key: String) {
        guard entries[key] == nil else { return }
        tick += 1
        entries[key] = (image, tick)
        positions += image.refs.count
        while positions > Self.positionBudget, entries.count > 1,
            let oldest = entries.min(by: { $0.value.tick < $1.value.tick })
        {
            entries[oldest.key] = nil
            positions -= oldest.value.image.refs.count
        }
    }
}

/// Opens points' disk images for the mount: each open takes a reader lease (kept by the
/// caller for as long as it reads) and reuses the flattened image when it was kept.
final class ImageOpener: Sendable {
    private let repository: Repository
    private let cache: ChunkCache
    private let images = Mutex(FlatImageCache())

    init(repository: Repository, cache: ChunkCache) {
        self.repository = repository
        self.cache = cache
    }

    func open(point: String, disk: String) throws -> (reader: ImageReader, lease: ReaderLease?) {
        let key = "\(point)/\(disk)"
        let cached = images.withLock { $0.image(for: key) }
        let (image, lease) = try repository.openImage(point: point, disk: disk, cached: cached)
        if cached == nil { images.withLock { $0.insert(image, for: key) } }
        return (ImageReader(image: image, cache: cache), lease)
    }
}
