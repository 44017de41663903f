/// Values kept by key within a budget, the least recently used dropped first: the policy of
/// the mount's and the commands' caches (flattened images, folder listings, disks looked
/// at, extent maps, the local copies of a remote store's chunks). Each value has a cost (its
/// bytes, its chunk positions, or 1); a hit makes it the most recent; `evict(downTo:)` drops
/// the oldest until the total is at most a target, sorting once, so a cache that empties to
/// below its budget makes room for many inserts per sort. Not locked: its owner keeps it
/// behind its own lock.
///
/// `ChunkCache` keeps its own entries: its eviction also weighs bytes set aside for loads in
/// flight and frames other threads are about to read, and it is the read path's innermost
/// loop, whose cost `make bench` measures.
public struct LRUCache<Key: Hashable, Value> {
    @usableFromInline
    struct Entry {
        @usableFromInline var value: Value
        @usableFromInline var cost: Int
        @usableFromInline var used: UInt64

        @inlinable init(value: Value, cost: Int, used: UInt64) {
            self.value = value
            self.cost = cost
            self.used = used
        }
    }

    @usableFromInline var entries: [Key: Entry] = [:]
    @usableFromInline var clock: UInt64 = 0
    @usableFromInline var total = 0
    /// What the values kept cost together.
    public var cost: Int { total }

    @inlinable public init() {}

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    /// The value kept for `key`, now the most recently used.
    @inlinable
    public mutating func value(for key: Key) -> Value? {
        clock += 1
        entries[key]?.used = clock
        return entries[key]?.value
    }

    /// Whether a value is kept for `key`, without making it recent.
    @inlinable
    public func contains(_ key: Key) -> Bool { entries[key] != nil }

    /// Keeps `value` for `key` as the most recently used, replacing what was kept for it.
    @inlinable
    public mutating func insert(_ value: Value, for key: Key, cost: Int) {
        clock += 1
        let old = entries.updateValue(Entry(value: value, cost: cost, used: clock), forKey: key)
        total += cost - (old?.cost ?? 0)
    }

    /// Drops the value kept for `key` and returns it.
    @discardableResult
    @inlinable
    public mutating func remove(_ key: Key) -> Value? {
        guard let old = entries.removeValue(forKey: key) else { return nil }
        total -= old.cost
        return old.value
    }

    /// Drops every value whose key `matches`.
    @inlinable
    public mutating func removeAll(where matches: (Key) -> Bool) {
        for key in entries.keys where matches(key) { remove(key) }
    }

    /// Drops the least recently used values, never `sparing`, until what is kept costs at
    /// most `target`; returns what was dropped, oldest first.
    @discardableResult
    @inlinable
    public mutating func evict(downTo target: Int, sparing: (Key) -> Bool = { _ in false }) -> [(
        key: Key, value: Value
    )] {
        guard total > target else { return [] }
        var dropped: [(key: Key, value: Value)] = []
        for (key, entry) in entries.sorted(by: { $0.value.used < $1.value.used }) where !sparing(key) {
            guard total > target else { break }
            entries[key] = nil
            total -= entry.cost
            dropped.append((key, entry.value))
        }
        return dropped
    }
}

extension LRUCache: Sendable where Key: Sendable, Value: Sendable {}
extension LRUCache.Entry: Sendable where Key: Sendable, Value: Sendable {}
