import XCTest

@testable import VaultCore

final class LRUCacheTests: XCTestCase {
    func testEvictionDropsTheLeastRecentlyUsedFirstDownToItsTarget() {
        var cache = LRUCache<String, Int>()
        for (key, cost) in [("a", 10), ("b", 20), ("c", 30)] { cache.insert(cost, for: key, cost: cost) }
        XCTAssertEqual(cache.cost, 60)
        XCTAssertEqual(cache.value(for: "a"), 10, "a hit makes a the most recent")
        let dropped = cache.evict(downTo: 40)
        XCTAssertEqual(dropped.map(\.key), ["b"], "b is now the oldest, and dropping it is enough")
        XCTAssertEqual(cache.cost, 40)
        XCTAssertEqual(cache.evict(downTo: 40).count, 0, "at the target nothing goes")
        XCTAssertEqual(cache.evict(downTo: 0) { $0 == "a" }.map(\.key), ["c"], "a spared, even over the target")
        XCTAssertEqual(cache.count, 1)
        XCTAssertEqual(cache.cost, 10)
    }

    func testReplacingRemovingAndFilteringKeepTheCostExact() {
        var cache = LRUCache<Int, String>()
        cache.insert("one", for: 1, cost: 5)
        cache.insert("uno", for: 1, cost: 7)
        XCTAssertEqual(cache.cost, 7)
        XCTAssertEqual(cache.value(for: 1), "uno")
        for key in 2...6 { cache.insert("\(key)", for: key, cost: key) }
        XCTAssertEqual(cache.remove(2), "2")
        XCTAssertNil(cache.remove(2))
        cache.removeAll { $0 % 2 == 0 }
        XCTAssertEqual(cache.cost, 7 + 3 + 5)
        XCTAssertFalse(cache.contains(4))
        XCTAssertTrue(cache.contains(5))
    }
}
