import Foundation
import TestSupport
import XCTest

/// The harness itself: a test run starts thousands of programs, and what each start leaks
/// adds up over `make test` (it once reached 1,300 descriptors and crashed `Process.run`).
final class HarnessTests: XCTestCase {
    private func openDescriptors() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
    }

    func testRunningCommandsLeavesNoDescriptorsOpen() throws {
        let scratch = Scratch("harness")
        let input = scratch.file("input")
        try Data("x".utf8).write(to: URL(fileURLWithPath: input))
        _ = try runCommand(["true"])
        let before = try openDescriptors()
        for _ in 0..<40 {
            _ = try mustRun(["cat"], timeout: 10)
            _ = try runCommand(["cat"], timeout: 10, stdinPath: input)
        }
        // A few descriptors may come and go with Foundation's own threads; 80 runs that each
        // leaked would add at least 160.
        XCTAssertLessThan(try openDescriptors() - before, 8)
    }

    /// A command that runs past its bound is killed with everything it started: a browser test
    /// killed on its bound once left chromedriver and chromium running.
    func testACommandPastItsBoundIsKilledWithWhatItStarted() throws {
        let scratch = Scratch("harness")
        let grandchild = scratch.file("grandchild")
        let orphan = scratch.file("orphan")
        // A sleep under a child, and one left to init by a double fork.
        let result = try runCommand(
            [
                "sh", "-c",
                "sh -c 'sleep 300 & echo $! > \(grandchild); wait' & (sleep 300 & echo $! > \(orphan)) ; wait",
            ], timeout: 2)
        XCTAssertTrue(result.timedOut)
        for file in [grandchild, orphan] {
            let pid = try XCTUnwrap(
                pid_t(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
            )
            // Gone, or dead and waiting for init to reap it.
            func running() -> Bool {
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                    let name = stat.lastIndex(of: ")")
                else { return false }
                return stat[stat.index(after: name)...].split(separator: " ").first != "Z"
            }
            let deadline = Date().addingTimeInterval(10)
            while running() && Date() < deadline { usleep(50_000) }
            XCTAssertFalse(running(), "the sleep \(file) is gone")
        }
    }
}
