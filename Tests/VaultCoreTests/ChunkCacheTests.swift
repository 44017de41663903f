import Dispatch
import Foundation
import Synchronization
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
            XCTAssertEqual(
                (try? cache.frames(hash, length: length, 0..<ChunkFile.frameCount(length)))?.reduce(0) {
                    $0 + $1.count
                }, length)
        }
        XCTAssertEqual(cache.decodes, 1)
    }

    func testCacheStaysWithinItsBudget() throws {
        let fixture = try Fixture()
        let chunks = try dataChunks(fixture)
        XCTAssertGreaterThan(chunks.count, 20)
        let cache = ChunkCache(store: fixture.repository.chunks, budget: 1 << 20)
        for (hash, length) in chunks { _ = try cache.frames(hash, length: length, 0..<ChunkFile.frameCount(length)) }
        XCTAssertLessThanOrEqual(cache.cachedBytes, 1 << 20)
        XCTAssertEqual(cache.decodes, chunks.count)
        let (lastHash, lastLength) = chunks.last!
        _ = try cache.frames(lastHash, length: lastLength, 0..<1)
        XCTAssertEqual(cache.decodes, chunks.count, "the most recent chunk is still cached")
    }

    func testALoadMakesRoomForItselfBeforeItDecodes() throws {
        let fixture = try Fixture(chunkSize: 1 << 20, diskSize: "24M")
        let chunks = try dataChunks(fixture).filter { $0.1 == 1 << 20 }
        XCTAssertGreaterThanOrEqual(chunks.count, 3)
        let budget = 7 << 19
        let cache = ChunkCache(store: fixture.repository.chunks, budget: budget)
        for (hash, length) in chunks.prefix(2) {
            _ = try cache.frames(hash, length: length, 0..<ChunkFile.frameCount(length))
        }
        XCTAssertEqual(cache.cachedBytes, 2 << 20)
        // The third load sets aside twice its size (stored bytes and frames) before it reads:
        // 2 MiB held and 2 set aside are over the 3.5 MiB budget, so it evicts down to 90% of
        // it first, where counting only the frames decoded would have kept all three chunks.
        let (hash, length) = chunks[2]
        _ = try cache.frames(hash, length: length, 0..<ChunkFile.frameCount(length))
        XCTAssertLessThanOrEqual(cache.cachedBytes, budget - budget / 10 - ChunkCache.reservation(0..<16) + length)
        let decodes = cache.decodes
        _ = try cache.frames(hash, length: length, 0..<ChunkFile.frameCount(length))
        XCTAssertEqual(cache.decodes, decodes, "the load kept all of its frames")
    }

    /// Sixteen readers at once, each loading a whole 1 MiB chunk of its own (2 MiB set aside:
    /// stored bytes and frames) into a 4 MiB cache: loads wait for room, so no more than two
    /// are in flight, and every reader gets its chunk.
    func testConcurrentLoadsWaitForRoomInsteadOfExceedingTheBudget() throws {
        let fixture = try Fixture(chunkSize: 1 << 20, diskSize: "96M")
        try fixture.disk.write("data/big.bin", pseudoRandomBytes(64 << 20, seed: 9))
        let chunks = try dataChunks(fixture).filter { $0.1 == 1 << 20 }
        XCTAssertGreaterThanOrEqual(chunks.count, 64)
        let budget = 4 << 20
        let cache = ChunkCache(store: fixture.repository.chunks, budget: budget)
        let read = Atomic<Int>(0)
        for round in 0..<4 {
            // Threads of their own (concurrentPerform would run only one per core), started
            // together.
            let done = DispatchGroup()
            let start = DispatchSemaphore(value: 0)
            for i in 0..<16 {
                done.enter()
                Thread.detachNewThread {
                    start.wait()
                    let (hash, length) = chunks[round * 16 + i]
                    if let frames = try? cache.frames(hash, length: length, 0..<ChunkFile.frameCount(length)),
                        frames.reduce(0, { $0 + $1.count }) == length
                    {
                        read.add(1, ordering: .relaxed)
                    }
                    done.leave()
                }
            }
            for _ in 0..<16 { start.signal() }
            XCTAssertEqual(done.wait(timeout: .now() + 120), .success)
        }
        XCTAssertEqual(read.load(ordering: .relaxed), 64)
        XCTAssertGreaterThan(cache.peakReservedBytes, 0)
        XCTAssertLessThanOrEqual(cache.peakReservedBytes, budget)
        XCTAssertEqual(cache.reservedBytes, 0)
        // One load alone larger than the budget still goes (a 1 MiB cache, the least it takes).
        let small = ChunkCache(store: fixture.repository.chunks, budget: 1 << 20)
        let (hash, length) = chunks[0]
        XCTAssertEqual(
            try small.frames(hash, length: length, 0..<ChunkFile.frameCount(length)).reduce(0) { $0 + $1.count }, length
        )
    }

    func testALoadGivesItsRoomBackWhetherItSucceedsOrFails() throws {
        let fixture = try Fixture(chunkSize: 1 << 20, diskSize: "24M")
        let (hash, length) = try XCTUnwrap(dataChunks(fixture).first { $0.1 == 1 << 20 })
        let cache = ChunkCache(store: fixture.repository.chunks, budget: 8 << 20)
        _ = try cache.frames(hash, length: length, 0..<ChunkFile.frameCount(length))
        XCTAssertEqual(cache.reservedBytes, 0)
        let missing = ChunkHash(bytes: [UInt8](repeating: 7, count: 32))
        XCTAssertThrowsError(try cache.frames(missing, length: 1 << 20, 0..<16))
        XCTAssertEqual(cache.reservedBytes, 0)
    }

    func testASmallReadDecodesOnlyItsFrame() throws {
        let fixture = try Fixture(chunkSize: 1 << 20, diskSize: "24M")
        let (hash, length) = try XCTUnwrap(dataChunks(fixture).first { $0.1 == 1 << 20 })
        let cache = ChunkCache(store: fixture.repository.chunks, budget: 64 << 20)
        let frame = try cache.frames(hash, length: length, 5..<6)[0]
        XCTAssertEqual(frame.count, ChunkFile.frameSize)
        XCTAssertEqual(cache.cachedBytes, ChunkFile.frameSize, "only the frame read is decoded and kept")
        var whole = [UInt8](repeating: 0, count: length)
        try whole.withUnsafeMutableBytes { try fixture.repository.chunks.load(hash, into: $0) }
        XCTAssertEqual(frame, Array(whole[(5 * ChunkFile.frameSize)..<(6 * ChunkFile.frameSize)]))
    }
}
