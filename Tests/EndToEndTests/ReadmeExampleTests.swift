import Foundation
import TestSupport
import XCTest

/// Every shell example in README.md, run as a user would paste it (scripts/readme-examples.sh):
/// each in the scene its `<!-- example: ... -->` comment names, on real disk images, a real
/// repository and real mounts. An example the test machine cannot run says why in that comment.
final class ReadmeExampleTests: XCTestCase {
    let top = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    func testEveryReadmeExampleRunsOrSaysWhyNot() throws {
        let bin = (productPath("vaultctl") as NSString).deletingLastPathComponent
        let result = try runCommand(["\(top)/scripts/readme-examples.sh", bin, "\(top)/README.md"], timeout: 900)
        print(result.stdout)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        let summary = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(summary.hasSuffix("not run here") && summary.contains("README examples ran"), summary)
        // Most examples run here; each one that does not says why.
        let lines = result.stdout.split(separator: "\n")
        XCTAssertGreaterThanOrEqual(lines.filter { $0.contains(": ran (") }.count, 15, result.stdout)
        for line in lines where line.contains(": not run here:") {
            XCTAssertGreaterThan(line.split(separator: ":", maxSplits: 2).last?.count ?? 0, 20, String(line))
        }
    }
}
