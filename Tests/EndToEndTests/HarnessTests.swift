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
}
