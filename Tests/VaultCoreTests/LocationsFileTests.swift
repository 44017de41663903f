import Foundation
import TestSupport
import XCTest

@testable import VaultCore

/// The locations file: what `vaultctl location` writes reads back the same, hostile values
/// stay values, and damaged text is refused with its line, never trapping.
final class LocationsFileTests: XCTestCase {
    private func write(_ text: String, in scratch: Scratch) -> String {
        let path = scratch.file("locations.toml")
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        return path
    }

    func testWhatIsWrittenReadsBackTheSame() throws {
        let scratch = Scratch("locations-file")
        let path = scratch.file("locations.toml")
        var locations = Locations.empty(path: path)
        for name in ["fast", "offsite"] {
            let repository = scratch.file(name)
            let made = try Repository.create(at: repository, chunkSize: 1 << 20, compressionLevel: 1)
            if name == "fast" { try made.createVault(named: "prod", policy: nil, now: Date()) }
            try locations.add(
                Location(
                    name: name, repository: repository, region: name == "offsite" ? "eu \"west\" \\ 1" : nil,
                    keyFile: name == "offsite" ? "/etc/vaultfs/keys/a b#c" : nil),
                makeDefault: name == "offsite")
        }
        try locations.add(Location(name: "copies", repository: scratch.file("copies")), mirrorOf: "fast")
        try locations.setCopy(CopyPolicy(vault: "prod", to: "copies", everySeconds: 3600, keepFulls: 3))
        try locations.save()
        let read = try XCTUnwrap(try Locations.load(path: path))
        XCTAssertEqual(read.entries, locations.entries)
        XCTAssertEqual(read.entries[2].mirrorOf, "fast")
        XCTAssertEqual(read.copies, locations.copies)
        XCTAssertEqual(read.defaultLocation?.name, "offsite")
        XCTAssertEqual(read.entries[1].region, "eu \"west\" \\ 1")
        XCTAssertEqual(read.entries[1].keyFile, "/etc/vaultfs/keys/a b#c")
        XCTAssertNil(try Locations.load(path: scratch.file("none.toml")))
    }

    func testHandWrittenFormsAreRead() throws {
        let scratch = Scratch("locations-file")
        let path = write(
            """
            # a comment
              [[location]]
            name = 'fast'   # literal string
            repository = "/srv/\\u0066ast"

            [[location]]
            name = "cold"
            repository = "s3://bucket/prefix"
            endpoint = "http://127.0.0.1:7480"
            default = true
            """, in: scratch)
        let read = try XCTUnwrap(try Locations.load(path: path))
        XCTAssertEqual(read.entries.map(\.name), ["fast", "cold"])
        XCTAssertEqual(read.entries[0].repository, "/srv/fast")
        XCTAssertEqual(read.defaultLocation?.name, "cold")
        XCTAssertEqual(read.entries[1].endpoint, "http://127.0.0.1:7480")
    }

    func testDamagedTextIsRefusedWithItsLine() throws {
        let scratch = Scratch("locations-file")
        let cases: [(String, String)] = [
            ("[[location]]\nname = \"a\"\nrepository = \"/x\"\nkey = 1\n", "line 4"),
            ("[[location]]\nname = \"a\"\nrepository = \"/x\"\nregion = \"a\\u0007\"\n", "control characters"),
            ("[[location]]\nname = \"a\"\nrepository = \"/x\\n\"\n", "control characters"),
            ("[[location]]\nname = \"a\"\nrepository = \"/x\" extra\n", "line 3: something follows"),
            ("[[location]]\nname = \"a\"\nrepository = \"/x\"\ndefault = yes\n", "line 4: default is true or false"),
            (
                "[[location]]\nname = \"a\"\nrepository = \"/x\"\n[[location]]\nname = \"a\"\nrepository = \"/y\"\n",
                "named twice"
            ),
            (
                "[[location]]\nname = \"a\"\nrepository = \"/x\"\ndefault = true\n[[location]]\nname = \"b\"\nrepository = \"/y\"\ndefault = true\n",
                "more than one location is the default"
            ),
            ("[location]\n", "line 1"),
            ("[[location]]\nname = \"../a\"\nrepository = \"/x\"\n", "bad location name"),
            ("[[location]]\nname = \"a\"\nrepository = \"/x\\q\"\n", "unknown escape"),
            ("[[location]]\nname = \"a\"\nrepository = \"/x\\uD800\"\n", "bad \\u escape"),
        ]
        for (text, expected) in cases {
            let path = write(text, in: scratch)
            XCTAssertThrowsError(try Locations.load(path: path), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(text.debugDescription): \(error)")
            }
        }
    }

    /// Any bytes at all: a value or a one-line refusal, never a trap or a hang.
    func testMutatedFilesNeverTrap() throws {
        let scratch = Scratch("locations-file")
        let valid = Array(
            "[[location]]\nname = \"fast\"\nrepository = \"/srv/a\\\"b\\u00e9\"\nregion = 'x'\ndefault = true\n".utf8)
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(state >> 33)
        }
        let alphabet = Array("\"\\'=#[]\n u".utf8)
        for _ in 0..<3000 {
            var bytes = valid
            for _ in 0..<(1 + next() % 4) {
                switch next() % 3 {
                case 0: bytes[next() % bytes.count] = UInt8(next() % 256)
                case 1: bytes.remove(at: next() % bytes.count)
                default: bytes.insert(alphabet[next() % alphabet.count], at: next() % bytes.count)
                }
                if bytes.isEmpty { bytes = valid }
            }
            let path = scratch.file("locations.toml")
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            do {
                let read = try Locations.load(path: path)
                for location in read?.entries ?? [] { XCTAssertNoThrow(try location.validate()) }
            } catch let error as VaultError {
                XCTAssertFalse(error.message.isEmpty)
            }
        }
    }
}
