import Foundation
import TestSupport
import VaultCore
import XCTest

@testable import VaultFiles

/// Names inside points are bytes: shown safely on a terminal, written exactly into a tar.
final class FileNameTests: XCTestCase {
    func testATerminalSeesControlCharactersAndBytesThatAreNotUTF8Quoted() {
        XCTAssertEqual(FileName("plain name.txt").quoted, "plain name.txt")
        XCTAssertEqual(FileName("é ü").quoted, "é ü")
        XCTAssertEqual(FileName("line\nbreak").quoted, "$'line\\nbreak'")
        XCTAssertEqual(FileName("\u{1B}[2Jclear").quoted, "$'\\E[2Jclear'")
        XCTAssertEqual(FileName([0xFF, 0xFE]).quoted, "$'\\377\\376'")
        XCTAssertEqual(FileName([0x61, 0xC3]).quoted, "$'a\\303'")
        XCTAssertEqual(FileName("it's\t\\").quoted, "$'it\\'s\\t\\\\'")
        XCTAssertEqual(FileName([0xC2, 0x9B]).quoted, "$'\\302\\233'")
    }

    func testOnlyNamesAnEntryMayHaveAreUsable() {
        for name: [UInt8] in [Array("a".utf8), Array("...".utf8), [0xFF], Array(".hidden".utf8)] {
            XCTAssertTrue(FileName(name).isUsable)
        }
        for name: [UInt8] in [[], [0x2E], [0x2E, 0x2E], Array("a/b".utf8), [0x61, 0, 0x62]] {
            XCTAssertFalse(FileName(name).isUsable)
        }
    }

    /// A long name that is not UTF-8 goes into a pax record that says its names are bytes,
    /// and GNU tar gives back exactly those bytes.
    func testATarOfANameThatIsNotUTF8GivesItsBytesBack() throws {
        let scratch = Scratch("tarnames")
        let long = Array(repeating: UInt8(0xE9), count: 150)
        var archive: [UInt8] = []
        let tar = TarWriter { archive += Array($0) }
        let attributes = FileAttributes(
            inode: 12, kind: .file, permissions: 0o644, uid: 0, gid: 0, links: 1, size: 3, blocks: 8,
            accessed: FileTime(seconds: 0, nanoseconds: 0), modified: FileTime(seconds: 0, nanoseconds: 0),
            changed: FileTime(seconds: 0, nanoseconds: 0))
        for name in [long, [0xFF, 0xFE]] {
            try tar.begin(
                TarWriter.Entry(
                    path: FileName(name), attributes: attributes, linkTarget: nil, hardLinkTo: nil, xattrs: []))
            try Array("abc".utf8).withUnsafeBytes { try tar.writeData($0) }
            try tar.endData(size: 3)
        }
        try tar.finish()
        try Data(archive).write(to: URL(fileURLWithPath: scratch.file("a.tar")))
        try FileManager.default.createDirectory(atPath: scratch.file("out"), withIntermediateDirectories: true)
        try mustRun(["tar", "-xf", scratch.file("a.tar"), "-C", scratch.file("out")])
        let names = try FileManager.default.contentsOfDirectory(atPath: scratch.file("out"))
        XCTAssertEqual(names.count, 2, "\(names)")
        guard let dir = opendir(scratch.file("out")) else { return XCTFail("cannot list") }
        defer { closedir(dir) }
        var found: Set<[UInt8]> = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { found.insert(name) }
        }
        XCTAssertEqual(found, [long, [0xFF, 0xFE]])
    }
}
