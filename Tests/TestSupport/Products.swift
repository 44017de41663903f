import Foundation

/// Path of a built executable of this package (`vaultctl`, `vaultfs`), next to the test
/// binary; `VAULTFS_BIN_DIR` overrides.
public func productPath(_ name: String) -> String {
    if let dir = ProcessInfo.processInfo.environment["VAULTFS_BIN_DIR"] { return "\(dir)/\(name)" }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = (exe as NSString).deletingLastPathComponent
    if dir.hasSuffix(".xctest/Contents/MacOS") { dir = ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent }
    return "\(dir)/\(name)"
}

/// Runs `vaultctl` against a repository.
public struct Vaultctl {
    public let repository: String

    public init(repository: String) { self.repository = repository }

    @discardableResult
    public func run(_ arguments: String..., timeout: TimeInterval = 120) throws -> String {
        try mustRun([productPath("vaultctl")] + arguments, environment: ["VAULT_REPO": repository], timeout: timeout)
    }

    /// Starts `vaultctl` in the background (the caller stops or waits for it), its standard
    /// output going to `output` when given.
    public func start(_ arguments: [String], output: String? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productPath("vaultctl"))
        process.arguments = arguments
        process.environment = ["VAULT_REPO": repository, "PATH": "/usr/bin:/bin"]
        process.standardOutput = output.flatMap { FileHandle(forWritingAtPath: $0) } ?? FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    public func attempt(_ arguments: [String], timeout: TimeInterval = 120) throws -> CommandResult {
        try runCommand([productPath("vaultctl")] + arguments, environment: ["VAULT_REPO": repository], timeout: timeout)
    }

    /// `points --json` (or `history --json`) decoded.
    public func json(_ arguments: String...) throws -> [[String: Any]] {
        let text = try mustRun([productPath("vaultctl")] + arguments + ["--json"], environment: ["VAULT_REPO": repository])
        guard let value = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] else {
            throw TestError.failed("not a JSON array: \(text)")
        }
        return value
    }
}
