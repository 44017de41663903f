import Dispatch
import TestSupport
import XCTest
@testable import VaultCore

final class ChunkCacheTests: XCTestCase {
    private func dataChunks(_ fixture: Fixture) throws -> [(ChunkHash, Int)] {
        let point = try fixture.backup("one")
        let image = try fixture.repository.flatten(point: point.id, disk: "root")
        var seen = Set<ChunkHash>()
        return image.refs.enumerated().compactMap { position, ref in
            guard case .data(let hash) = ref, seen.insert(hash).inserted else { return nil }
            return (hash, image.length(of: position))
        }
    }

    func testConcurrentReadersOfOneChunkDecodeItOnce() throws {
        let fixture = try Fixture()
        let (hash, length) = try XCTUnwrap(dataChunks(fixture).first)
        let cache = ChunkCache(store: fixture.repository.chunks, budget: 64 << 20)
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            XCTAssertEqual((try? cache.chunk(hash, length: length))?.count, length)
        }
        XCTAssertEqual(cache.decodes, 1)
    }

    func testCacheStaysWithinItsBudget() throws {
        let fixture = try Fixture()
        let chunks = try dataChunks(fixture)
        XCTAssertGreaterThan(chunks.count, 20)
        let cache = ChunkCache(store: fixture.repository.chunks, budget: 1 << 20)
        for (hash, length) in chunks { _ = try cache.chunk(hash, length: length) }
        XCTAssertLessThanOrEqual(cache.cachedBytes, 1 << 20)
        XCTAssertEqual(cache.decodes, chunks.count)
        let (lastHash, lastLength) = chunks.last!
        _ = try cache.chunk(lastHash, length: lastLength)
        XCTAssertEqual(cache.decodes, chunks.count, "the most recent chunk is still cached")
    }
}
