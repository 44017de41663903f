import Foundation
import TestSupport
import VaultCore

/// A mount's memory budget for tests of what counts against it (listings, extent maps): the
/// chunk cache of an empty repository in a scratch folder.
struct MemoryBudget {
    let scratch = Scratch("budget")
    let cache: ChunkCache

    init(bytes: Int) throws {
        let repository = try Repository.create(at: scratch.file("repo"), chunkSize: 64 << 10, compressionLevel: 3)
        cache = ChunkCache(store: repository.chunks, budget: bytes)
    }
}
