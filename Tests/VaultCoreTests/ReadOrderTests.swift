import XCTest

@testable import VaultCore

/// The order in which a backup's workers take a disk's data positions.
final class ReadOrderTests: XCTestCase {
    private func taken(_ order: ReadOrder) -> [Int] {
        (0..<order.claims).compactMap { order.index(ofClaim: $0) }
    }

    func testEveryPositionIsTakenOnceWhateverTheCountStripesAndRun() {
        for count in 0...70 {
            for (stripes, run) in [(1, 1), (1, 4), (4, 4), (2, 8), (8, 1), (3, 5), (16, 4)] {
                let order = ReadOrder(count: count, stripes: stripes, run: run)
                XCTAssertEqual(
                    taken(order).sorted(), Array(0..<count), "count \(count), \(stripes) stripes of runs of \(run)")
                XCTAssertNil(order.index(ofClaim: order.claims))
                XCTAssertNil(order.index(ofClaim: -1))
            }
        }
    }

    func testRunsTakeEveryPositionOnceInClaimOrder() {
        for count in [0, 1, 63, 64, 65, 826] {
            let order = ReadOrder(count: count, workers: 16, chunkSize: 64 << 10)
            XCTAssertEqual(order.run, 64)
            let byRuns = (0..<order.runs).flatMap { order.indices(ofRun: $0) }
            XCTAssertEqual(byRuns, taken(order), "count \(count)")
            XCTAssertEqual(byRuns.sorted(), Array(0..<count))
        }
    }

    /// A run is 4 MiB of the disk whatever the chunk size, and one chunk where chunks are larger.
    func testARunIsOneFourMiBRead() {
        XCTAssertEqual(ReadOrder(count: 10, workers: 16, chunkSize: 1 << 20).run, 4)
        XCTAssertEqual(ReadOrder(count: 10, workers: 16, chunkSize: 4 << 20).run, 1)
        XCTAssertEqual(ReadOrder(count: 10, workers: 16, chunkSize: 64 << 10).run, 64)
        XCTAssertEqual(ReadOrder(count: 10, workers: 8, chunkSize: 1 << 20).stripes, 2)
    }

    func testOneStripeIsFrontToBack() {
        XCTAssertEqual(taken(ReadOrder(count: 37, stripes: 1, run: 4)), Array(0..<37))
    }

    func testSixteenWorkersHoldRunsFromFourPlacesAtOnce() {
        let order = ReadOrder(count: 800, workers: 16, chunkSize: 1 << 20)
        XCTAssertEqual(order.stripes, 4)
        XCTAssertEqual(
            taken(order).prefix(16), [0, 1, 2, 3, 200, 201, 202, 203, 400, 401, 402, 403, 600, 601, 602, 603])
        XCTAssertEqual(taken(order).suffix(4), [796, 797, 798, 799])
    }

    /// The corpus image's v3 changes: 256 of its 826 data positions, in one stretch.
    func testAClusterOfChangesIsSpreadOverTheWholeBackup() {
        let order = ReadOrder(count: 826, workers: 16, chunkSize: 1 << 20)
        let taken = taken(order)
        let cluster = 494..<750
        let claims = taken.indices.filter { cluster.contains(taken[$0]) }
        XCTAssertLessThan(claims.first!, taken.count / 10)
        XCTAssertGreaterThan(claims.last!, taken.count * 9 / 10)
        // Front to back, the cluster would fill one stretch of the backup with no unchanged
        // position between; here each sixteen positions taken in a row hold some of each.
        for window in stride(from: 0, to: taken.count - 16, by: 16)
        where window > taken.count / 10 && window < taken.count * 9 / 10 {
            let changed = taken[window..<(window + 16)].filter { cluster.contains($0) }.count
            XCTAssertTrue((1..<16).contains(changed), "claims \(window)..<\(window + 16)")
        }
    }
}
