import Synchronization
import VaultCore

/// Flattened images kept for reopening, least recently used evicted first, bounded by chunk
/// positions (about 40 bytes each) rather than by count, so a few huge disks cannot exhaust
/// memory. Open files hold their own image and are unaffected by eviction.
struct FlatImageCache {
    /// About 160 MB of chunk references.
    static let positionBudget = 4 << 20

    private var images = LRUCache<String, FlatImage>()

    mutating func image(for key: String) -> FlatImage? { images.value(for: key) }

    /// Keeps `image`; the one just kept stays even when it alone is over the budget.
    mutating func insert(_ image: FlatImage, for key: String) {
        guard !images.contains(key) else { return }
        images.insert(image, for: key, cost: image.refs.count)
        images.evict(downTo: Self.positionBudget) { $0 == key }
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
