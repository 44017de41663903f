import Foundation
import TestSupport
import XCTest

/// The console in a real browser: Debian's chromium, headless, driven by Selenium
/// (Tests/browser/console_test.py) against a real `vaultctl serve`. Bounded (4 minutes), and
/// the browser, the server and the scratch folder go in every outcome.
final class WebBrowserTests: XCTestCase {
    func testAnOperatorLogsInBrowsesBacksUpDeletesAndDownloadsInChromium() throws {
        for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            XCTAssertTrue(
                FileManager.default.isExecutableFile(atPath: program),
                "\(program) is missing: scripts/install-deps.sh --test installs it")
        }
        // A freeze hook that takes three seconds, so the page sees the backup running.
        let setup = try WebConsoleTests.Setup(freeze: "sleep 3")
        defer { setup.server.stop() }
        let downloads = setup.scratch.file("downloads")
        let screenshots =
            ProcessInfo.processInfo.environment["VAULTFS_SCREENSHOTS"] ?? setup.scratch.file("screenshots")
        for folder in [downloads, screenshots] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("browser/console_test.py").path
        let result = try runCommand(
            [
                "python3", script, "--url", setup.server.url, "--token-file", setup.server.tokenFile, "--source",
                setup.source("etc/hostname"), "--downloads", downloads, "--screenshots", screenshots,
            ], timeout: 240)
        XCTAssertFalse(result.timedOut, "the browser test took over 4 minutes: \(result.stdout)")
        XCTAssertEqual(result.status, 0, "\(result.stdout)\n\(result.stderr.suffix(3000))")
        XCTAssertTrue(result.stdout.contains("all steps passed"), result.stdout)
        // Each page's screenshot is a PNG.
        for page in ["login", "points", "point", "files", "servers", "backup", "jobs", "delete", "history", "vaults"] {
            let bytes = (try? readBytes("\(screenshots)/\(page).png")) ?? []
            XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "\(page).png")
        }
        // What the browser did, the CLI sees: the new point, undeleted, with its tag.
        let points = try setup.ctl.json("points", "--json")
        let made = try XCTUnwrap(points.first { $0["name"] as? String == "from-browser" })
        XCTAssertEqual(made["status"] as? String, "Active")
        XCTAssertEqual(made["deletion"] as? String, "")
        XCTAssertEqual((made["tags"] as? [String: String])?["ticket"], "OPS-9")
        XCTAssertEqual(made["description"] as? String, "started in chromium")
    }
}
