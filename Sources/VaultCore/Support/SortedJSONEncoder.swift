import Foundation

/// JSON byte for byte as Foundation's JSONEncoder writes it with `.sortedKeys`,
/// `.withoutEscapingSlashes` and `.iso8601` dates (pretty or not), written without its
/// intermediate dictionaries: a page of 100 points took 1.7 ms in JSONEncoder, a third of the
/// console's time per request. Numbers other than integers, dates, data and URLs are written
/// by JSONEncoder itself, one value at a time, so their spelling cannot drift.
/// JSONTextTests compares the two on every view the commands print.
struct SortedJSONEncoder {
    var pretty: Bool

    func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        // A value that encodes nothing is an error at the top, as in JSONEncoder.
        guard let item = try Self.encoded(value, path: []) else {
            throw EncodingError.invalidValue(
                value, EncodingError.Context(codingPath: [], debugDescription: "the value encoded nothing"))
        }
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        write(item, depth: 0, into: &out)
        return out
    }

    /// A value once encoded: a scalar, or an object or array still being filled.
    enum Item {
        case null
        case bool(Bool)
        case int(Int64)
        case uint(UInt64)
        case string(String)
        /// JSON text as JSONEncoder wrote it (a number, a date).
        case raw([UInt8])
        case container(Container)
    }

    /// An object (keys and items side by side) or an array (items only). A class: Codable's
    /// containers are handed out by value and must all fill the same one.
    final class Container {
        let isObject: Bool
        var keys: [String] = []
        var items: [Item] = []

        init(isObject: Bool) { self.isObject = isObject }

        func set(_ key: String, _ item: Item) {
            keys.append(key)
            items.append(item)
        }
    }

    static func item<T: Encodable>(_ value: T, path: [any CodingKey]) throws -> Item {
        // A value that encoded nothing is an empty object, as in JSONEncoder.
        try encoded(value, path: path) ?? .container(Container(isObject: true))
    }

    private static func encoded<T: Encodable>(_ value: T, path: [any CodingKey]) throws -> Item? {
        if T.self == String.self, let text = value as? String { return .string(text) }
        if T.self == Int.self, let number = value as? Int { return .int(Int64(number)) }
        if T.self == Int64.self, let number = value as? Int64 { return .int(number) }
        if T.self == Bool.self, let flag = value as? Bool { return .bool(flag) }
        if T.self == Date.self || T.self == Double.self || T.self == Float.self || T.self == Data.self
            || T.self == URL.self || T.self == Decimal.self
        {
            return .raw(try foundation(value))
        }
        let encoder = TreeEncoder(path: path)
        try value.encode(to: encoder)
        return encoder.item
    }

    /// One value as JSONEncoder spells it (a fragment: JSONEncoder writes bare numbers and
    /// strings at the top level).
    static func foundation<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Array(try encoder.encode(value))
    }

    private func write(_ item: Item, depth: Int, into out: inout [UInt8]) {
        switch item {
        case .null: out += Self.null
        case .bool(let flag): out += flag ? Self.true : Self.false
        case .int(let number):
            if number < 0 { out.append(UInt8(ascii: "-")) }
            Self.writeDigits(number.magnitude, into: &out)
        case .uint(let number): Self.writeDigits(number, into: &out)
        case .string(let text): Self.writeString(text, into: &out)
        case .raw(let bytes): out += bytes
        case .container(let container): write(container, depth: depth, into: &out)
        }
    }

    private func write(_ container: Container, depth: Int, into out: inout [UInt8]) {
        out.append(container.isObject ? UInt8(ascii: "{") : UInt8(ascii: "["))
        let close = container.isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
        if container.items.isEmpty {
            // JSONEncoder's pretty form of an empty container is two newlines.
            if pretty {
                out += [10, 10]
                indent(depth, into: &out)
            }
            out.append(close)
            return
        }
        // Keys in the order of their UTF-8 bytes, as JSONEncoder sorts them.
        let order = container.isObject ? Self.sortedOrder(container.keys) : Array(container.items.indices)
        if pretty { out.append(10) }
        for (n, index) in order.enumerated() {
            if n > 0 {
                out.append(UInt8(ascii: ","))
                if pretty { out.append(10) }
            }
            if pretty { indent(depth + 1, into: &out) }
            if container.isObject {
                Self.writeString(container.keys[index], into: &out)
                out += pretty ? Self.prettyColon : Self.colon
            }
            write(container.items[index], depth: depth + 1, into: &out)
        }
        if pretty {
            out.append(10)
            indent(depth, into: &out)
        }
        out.append(close)
    }

    private func indent(_ depth: Int, into out: inout [UInt8]) {
        for _ in 0..<2 * depth { out.append(UInt8(ascii: " ")) }
    }

    private static let hex = Array("0123456789abcdef".utf8)
    private static let null = Array("null".utf8)
    private static let `true` = Array("true".utf8)
    private static let `false` = Array("false".utf8)
    private static let colon = Array(":".utf8)
    private static let prettyColon = Array(" : ".utf8)

    private static func writeDigits(_ number: UInt64, into out: inout [UInt8]) {
        guard number >= 10 else { return out.append(UInt8(ascii: "0") + UInt8(number)) }
        writeDigits(number / 10, into: &out)
        out.append(UInt8(ascii: "0") + UInt8(number % 10))
    }

    /// The indices of `keys` in the order of their UTF-8 bytes. A key given twice (only a
    /// custom `encode(to:)` can) keeps its last value, as in JSONEncoder.
    private static func sortedOrder(_ keys: [String]) -> [Int] {
        // Keys of ASCII only (every CodingKeys' are), whose byte order is String's own.
        if keys.allSatisfy({ $0.utf8.allSatisfy { $0 < 0x80 } }) {
            let order = keys.indices.sorted { a, b in keys[a] < keys[b] || (keys[a] == keys[b] && a < b) }
            return order.indices.compactMap { n in
                n + 1 < order.count && keys[order[n]] == keys[order[n + 1]] ? nil : order[n]
            }
        }
        var keys = keys
        for i in keys.indices { keys[i].makeContiguousUTF8() }
        func compare(_ a: Int, _ b: Int) -> Int {
            let compared = keys[a].utf8.withContiguousStorageIfAvailable { x in
                keys[b].utf8.withContiguousStorageIfAvailable { y -> Int in
                    let length = min(x.count, y.count)
                    let common = length == 0 ? 0 : Int(memcmp(x.baseAddress!, y.baseAddress!, length))
                    return common != 0 ? common : x.count - y.count
                }
            }
            if let compared = compared ?? nil { return compared }
            if keys[a].utf8.elementsEqual(keys[b].utf8) { return 0 }
            return keys[a].utf8.lexicographicallyPrecedes(keys[b].utf8) ? -1 : 1
        }
        let order = keys.indices.sorted { a, b in
            let compared = compare(a, b)
            return compared < 0 || (compared == 0 && a < b)
        }
        return order.indices.compactMap { n in
            n + 1 < order.count && compare(order[n], order[n + 1]) == 0 ? nil : order[n]
        }
    }

    /// A string with JSONEncoder's escapes: `"` and `\`, the five short forms, and `\u00xx`
    /// for the other control characters; everything else as its UTF-8.
    static func writeString(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        let plain = text.utf8.withContiguousStorageIfAvailable { bytes in
            guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") })
            else { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if plain == true { return out.append(UInt8(ascii: "\"")) }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0..<0x20:
                out += Array("\\u00".utf8)
                out += [hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// The Encoder SortedJSONEncoder hands to each value: what the value encodes becomes `item`.
private final class TreeEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var item: SortedJSONEncoder.Item?

    init(path: [any CodingKey]) { codingPath = path }

    /// The container this value fills: the one asked for before, if any, as JSONEncoder does.
    func container(object: Bool) -> SortedJSONEncoder.Container {
        if case .container(let existing) = item, existing.isObject == object { return existing }
        let container = SortedJSONEncoder.Container(isObject: object)
        item = .container(container)
        return container
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedContainer<Key>(container: container(object: true), codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        UnkeyedContainer(container: container(object: false), codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(encoder: self) }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let container: SortedJSONEncoder.Container
    let codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws { container.set(key.stringValue, .null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { container.set(key.stringValue, .bool(value)) }
    mutating func encode(_ value: String, forKey key: Key) throws { container.set(key.stringValue, .string(value)) }
    mutating func encode(_ value: Int, forKey key: Key) throws { container.set(key.stringValue, .int(Int64(value))) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { container.set(key.stringValue, .int(Int64(value))) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { container.set(key.stringValue, .int(Int64(value))) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { container.set(key.stringValue, .int(Int64(value))) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { container.set(key.stringValue, .int(value)) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { container.set(key.stringValue, .uint(UInt64(value))) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws {
        container.set(key.stringValue, .uint(UInt64(value)))
    }
    mutating func encode(_ value: UInt16, forKey key: Key) throws {
        container.set(key.stringValue, .uint(UInt64(value)))
    }
    mutating func encode(_ value: UInt32, forKey key: Key) throws {
        container.set(key.stringValue, .uint(UInt64(value)))
    }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { container.set(key.stringValue, .uint(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        container.set(key.stringValue, .raw(try SortedJSONEncoder.foundation(value)))
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        container.set(key.stringValue, .raw(try SortedJSONEncoder.foundation(value)))
    }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        container.set(key.stringValue, try SortedJSONEncoder.item(value, path: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        let nested = SortedJSONEncoder.Container(isObject: true)
        container.set(key.stringValue, .container(nested))
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(container: nested, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = SortedJSONEncoder.Container(isObject: false)
        container.set(key.stringValue, .container(nested))
        return UnkeyedContainer(container: nested, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder { SuperEncoder(parent: container, key: "super", path: codingPath) }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        SuperEncoder(parent: container, key: key.stringValue, path: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let container: SortedJSONEncoder.Container
    let codingPath: [any CodingKey]
    var count: Int { container.items.count }

    private struct IndexKey: CodingKey {
        var stringValue: String { "Index \(intValue ?? 0)" }
        var intValue: Int?
        init(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }

    mutating func encodeNil() throws { container.items.append(.null) }
    mutating func encode(_ value: Bool) throws { container.items.append(.bool(value)) }
    mutating func encode(_ value: String) throws { container.items.append(.string(value)) }
    mutating func encode(_ value: Int) throws { container.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int8) throws { container.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int16) throws { container.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int32) throws { container.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int64) throws { container.items.append(.int(value)) }
    mutating func encode(_ value: UInt) throws { container.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt8) throws { container.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt16) throws { container.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt32) throws { container.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt64) throws { container.items.append(.uint(value)) }
    mutating func encode(_ value: Double) throws {
        container.items.append(.raw(try SortedJSONEncoder.foundation(value)))
    }
    mutating func encode(_ value: Float) throws {
        container.items.append(.raw(try SortedJSONEncoder.foundation(value)))
    }
    mutating func encode<T: Encodable>(_ value: T) throws {
        container.items.append(try SortedJSONEncoder.item(value, path: codingPath + [IndexKey(intValue: count)]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<
        NestedKey
    > {
        let nested = SortedJSONEncoder.Container(isObject: true)
        let path = codingPath + [IndexKey(intValue: count)]
        container.items.append(.container(nested))
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(container: nested, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = SortedJSONEncoder.Container(isObject: false)
        let path = codingPath + [IndexKey(intValue: count)]
        container.items.append(.container(nested))
        return UnkeyedContainer(container: nested, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let slot = SortedJSONEncoder.Container(isObject: false)
        container.items.append(.container(slot))
        return SuperEncoder(parent: container, index: container.items.count - 1, path: codingPath)
    }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let encoder: TreeEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }

    mutating func encodeNil() throws { encoder.item = .null }
    mutating func encode(_ value: Bool) throws { encoder.item = .bool(value) }
    mutating func encode(_ value: String) throws { encoder.item = .string(value) }
    mutating func encode(_ value: Int) throws { encoder.item = .int(Int64(value)) }
    mutating func encode(_ value: Int8) throws { encoder.item = .int(Int64(value)) }
    mutating func encode(_ value: Int16) throws { encoder.item = .int(Int64(value)) }
    mutating func encode(_ value: Int32) throws { encoder.item = .int(Int64(value)) }
    mutating func encode(_ value: Int64) throws { encoder.item = .int(value) }
    mutating func encode(_ value: UInt) throws { encoder.item = .uint(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { encoder.item = .uint(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { encoder.item = .uint(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { encoder.item = .uint(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { encoder.item = .uint(value) }
    mutating func encode(_ value: Double) throws { encoder.item = .raw(try SortedJSONEncoder.foundation(value)) }
    mutating func encode(_ value: Float) throws { encoder.item = .raw(try SortedJSONEncoder.foundation(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        encoder.item = try SortedJSONEncoder.item(value, path: codingPath)
    }
}

/// The encoder `superEncoder()` gives: what it encodes goes under a key of the parent object,
/// or in a slot of the parent array, once it is done (each call replaces the value).
private final class SuperEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    private let inner: TreeEncoder
    private let parent: SortedJSONEncoder.Container
    private let key: String?
    private let index: Int?

    init(parent: SortedJSONEncoder.Container, key: String, path: [any CodingKey]) {
        self.parent = parent
        self.key = key
        index = nil
        codingPath = path
        inner = TreeEncoder(path: path)
    }

    init(parent: SortedJSONEncoder.Container, index: Int, path: [any CodingKey]) {
        self.parent = parent
        key = nil
        self.index = index
        codingPath = path
        inner = TreeEncoder(path: path)
    }

    deinit {
        let item = inner.item ?? .container(SortedJSONEncoder.Container(isObject: true))
        if let key {
            parent.set(key, item)
        } else if let index, parent.items.indices.contains(index) {
            parent.items[index] = item
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        inner.container(keyedBy: type)
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer { inner.unkeyedContainer() }
    func singleValueContainer() -> any SingleValueEncodingContainer { inner.singleValueContainer() }
}
