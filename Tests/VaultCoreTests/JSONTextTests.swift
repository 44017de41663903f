import Foundation
import TestSupport
import XCTest

@testable import VaultCore

/// `JSON.encode` writes JSON with SortedJSONEncoder: the bytes must be Foundation's
/// JSONEncoder's, pretty and as one line, for the views the commands print and for the shapes
/// Codable can give.
final class JSONTextTests: XCTestCase {
    private func foundation<T: Encodable>(_ value: T, pretty: Bool) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
    }

    private func assertSame<T: Encodable>(
        _ value: T, _ what: String, file: StaticString = #filePath, line: UInt = #line
    )
        throws
    {
        XCTAssertEqual(
            String(decoding: JSON.encode(value), as: UTF8.self), try foundation(value, pretty: true), "pretty: \(what)",
            file: file, line: line)
        XCTAssertEqual(
            String(decoding: JSON.encodeLine(value), as: UTF8.self), try foundation(value, pretty: false),
            "line: \(what)", file: file, line: line)
    }

    func testViewsOfARealRepositoryAreFoundationsBytes() throws {
        let fixture = try Fixture()
        let repository = fixture.repository
        let full = try fixture.backup("full-one")
        _ = try fixture.backup("incremental", kind: .incremental, parent: full.id)
        try assertSame(try repository.history(), "history")
        try assertSame(try repository.page(try PointQuery(fields: [:])), "a page")
        try assertSame(try repository.page(try PointQuery(fields: ["limit": "1", "offset": "5"])), "an empty page")
        let vault = try repository.catalog.vault(named: "prod")
        try assertSame(VaultView(vault, servers: ["web"], location: "here"), "a vault")
        try assertSame(PolicyView(vault), "a policy")

        // Every optional part of a point set, with text a guest or a user could choose.
        var view = try repository.view(of: full)
        view.uniqueBytes = 12345
        view.progress = .init(doneBytes: 5, totalBytes: 10, percent: 50)
        view.warning = "frozen \"too\" long\n\u{1}\u{7f}/\\ é 日本 \u{1F600}"
        view.error = ""
        view.tags = ["": "empty", "Z": "upper", "a": "", "é": "accent", "\u{0}": "nul"]
        view.copyOf = .init(location: nil, point: "P")
        view.frozenMs = Int64.min
        var volume = DiskContentsView.VolumeView(name: "root", partition: 1, offset: 1 << 20, size: Int64.max)
        volume.notes = ["one", "two"]
        volume.reason = "not shown: \t tab"
        view.disks[0].contents = DiskContentsView(partitionTable: "gpt", volumes: [volume])
        try assertSame([view, view], "a point with every part set")

        // Two tags the catalog tells apart by their bytes but Swift takes for one key.
        let twice = PointView(
            full, disks: [],
            tags: [
                PointTag(pointId: full.id, key: "caf\u{E9}", value: "composed"),
                PointTag(pointId: full.id, key: "cafe\u{301}", value: "decomposed"),
            ], location: "here")
        XCTAssertEqual(twice.tags, ["caf\u{E9}": "composed"])
    }

    private struct Shapes: Codable {
        var empty: [String: Int] = [:]
        var emptyList: [Int] = []
        var nested: [[[String]]] = [[], [[]], [["a", "b"]]]
        var numbers: [Double] = [0, -0.0, 0.1, 1.5, 1e20, 1e-7, 123_456_789_012_345_678, .leastNonzeroMagnitude]
        var float: Float = 0.1
        var date = Date(timeIntervalSince1970: 1_700_000_000.25)
        var byInt: [Int: String] = [1: "x", 10: "y", 2: "z", -1: "n"]
        var optional: String? = nil
        var big: UInt64 = .max
        var small: Int8 = -128
        var flag = true
        var data = Data([0, 1, 2, 250])
        var url = URL(string: "https://example.com/a b")
        var objects: [String: [String: Bool]] = ["b": ["y": true], "a": [:]]
    }

    /// A value that encodes nothing, one that encodes null itself, and one that asks for
    /// its container twice.
    private struct Quiet: Encodable {
        func encode(to encoder: any Encoder) throws {}
    }
    private struct ExplicitNull: Encodable {
        enum Key: CodingKey { case gone, there }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            try container.encodeNil(forKey: .gone)
            var again = encoder.container(keyedBy: Key.self)
            try again.encode(1, forKey: .there)
            try again.encode("the last one", forKey: .there)
        }
    }
    private struct Nested: Encodable {
        enum Key: CodingKey { case inner, list, parent }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            var inner = container.nestedContainer(keyedBy: Key.self, forKey: .inner)
            try inner.encode("deep", forKey: .list)
            var list = container.nestedUnkeyedContainer(forKey: .list)
            try list.encode(1)
            try list.encodeNil()
            var row = list.nestedUnkeyedContainer()
            try row.encode(true)
            var object = list.nestedContainer(keyedBy: Key.self)
            try object.encode(2.5, forKey: .inner)
            try "from super".encode(to: container.superEncoder(forKey: .parent))
        }
    }

    func testEveryShapeCodableGivesIsFoundationsBytes() throws {
        try assertSame(Shapes(), "shapes")
        try assertSame([Quiet()], "a value that encodes nothing")
        XCTAssertThrowsError(try JSONEncoder().encode(Quiet()), "Foundation refuses it at the top")
        XCTAssertEqual(JSON.encode(Quiet()), Array("null\n".utf8), "and so does JSON.encode")
        try assertSame(ExplicitNull(), "an explicit null and a container asked for twice")
        try assertSame(Nested(), "nested containers and a super encoder")
        try assertSame("a bare string", "a fragment")
        try assertSame(42, "a bare number")
        try assertSame([String](), "an empty list at the top")
        try assertSame([String: String](), "an empty object at the top")
        try assertSame([Int?.none, 1], "a null in a list")
    }

    /// Strings of random Unicode scalars (control characters, quotes and backslashes often)
    /// as values and as keys.
    func testRandomTextIsEscapedAsFoundationEscapesIt() throws {
        var generator = SystemRandomNumberGenerator()
        let common: [Unicode.Scalar] = [
            "\"", "\\", "/", "\u{0}", "\u{8}", "\u{c}", "\u{1f}", "\u{7f}", "\u{2028}", "a",
        ]
        func randomText() -> String {
            var text = ""
            for _ in 0..<Int.random(in: 0...24, using: &generator) {
                if Bool.random(using: &generator) {
                    text.unicodeScalars.append(common.randomElement(using: &generator)!)
                } else if let scalar = Unicode.Scalar(UInt32.random(in: 0...0x10FFFF, using: &generator)) {
                    text.unicodeScalars.append(scalar)
                }
            }
            return text
        }
        for _ in 0..<300 {
            let texts = [randomText(), randomText(), randomText()]
            let object = Dictionary(texts.map { ($0, [$0, $0.uppercased()]) }, uniquingKeysWith: { first, _ in first })
            try assertSame(object, "random text \(texts.map { Array($0.unicodeScalars) })")
        }
    }
}
