import Foundation
import TestSupport
import XCTest

@testable import VaultCore

/// The local index of stored chunks against the removal records collections write: it must
/// never name a chunk the store lacks, whatever records it missed or the store lost.
final class ChunkIndexTests: XCTestCase {
    let scratch = Scratch("index")
    var repository: Repository!
    var ids: [ChunkHash] = []

    override func setUpWithError() throws {
        repository = try Repository.create(at: scratch.file("repo"), chunkSize: 64 << 10, compressionLevel: 3)
        ids = (0..<5).map { i in [UInt8](repeating: UInt8(i), count: 16).withUnsafeBytes { ChunkHash(of: $0) } }
        for id in ids { try repository.objects.put(repository.chunks.key(for: id), [1, 2, 3], durable: false) }
    }

    private func index(of store: String = "the store") -> ChunkIndex {
        ChunkIndex(path: scratch.file("chunks.index"), store: store)
    }

    private func remove(_ removed: [ChunkHash]) throws {
        try RemovalRecords.write(removed, to: repository.objects)
        for id in removed { try repository.chunks.remove(id) }
    }

    /// What the index names, of the test's chunks.
    private func named(_ index: ChunkIndex) -> [Int] { ids.indices.filter { index.contains(ids[$0]) } }

    func testIndexForgetsWhatCollectionsRemovedAndRebuildsWhenItCannotTell() throws {
        let objects = repository.objects
        let chunks = repository.chunks
        let first = index()
        XCTAssertEqual(named(first), [], "nothing is trusted before catching up")
        try first.catchUp(objects, chunks: chunks)
        XCTAssertEqual(named(first), [0, 1, 2, 3, 4], "built from a listing")

        // Records 1 and 2 are taken in, by this process and by a later one reading the file.
        try remove([ids[0]])
        try remove([ids[1]])
        try first.catchUp(objects, chunks: chunks)
        XCTAssertEqual(named(first), [2, 3, 4])
        let second = index()
        try second.catchUp(objects, chunks: chunks)
        XCTAssertEqual(named(second), [2, 3, 4])
        // An id stored since survives a restart.
        second.insert(ids[0])
        try objects.put(chunks.key(for: ids[0]), [1], durable: false)
        let third = index()
        try third.catchUp(objects, chunks: chunks)
        XCTAssertEqual(named(third), [0, 2, 3, 4])

        // A gap in the records (3 pruned or lost, 4 there): rebuilt, so 3's removal counts.
        try remove([ids[2]])
        try RemovalRecords.write([], to: objects)
        try objects.delete(RemovalRecords.key(3))
        try third.catchUp(objects, chunks: chunks)
        XCTAssertEqual(named(third), [0, 3, 4])

        // A store that lost its records (made again, or rolled back): rebuilt from the listing.
        for generation in try RemovalRecords.generations(in: objects) {
            try objects.delete(RemovalRecords.key(generation))
        }
        try chunks.remove(ids[3])
        try third.catchUp(objects, chunks: chunks)
        XCTAssertEqual(named(third), [0, 4])

        // Another store's index under the same path is not used.
        try chunks.remove(ids[4])
        let other = index(of: "another store")
        try other.catchUp(objects, chunks: chunks)
        XCTAssertEqual(named(other), [0])
    }

    func testPruningKeepsTheNewestRecordsWithoutAGap() throws {
        for _ in 0..<(RemovalRecords.kept + 3) { try RemovalRecords.write([ids[0]], to: repository.objects) }
        let generations = try RemovalRecords.generations(in: repository.objects)
        XCTAssertEqual(generations, Array(4...(RemovalRecords.kept + 3)))
        XCTAssertEqual(try RemovalRecords.read(generations.last!, from: repository.objects), [ids[0]])
    }
}
