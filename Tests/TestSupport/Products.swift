import Foundation

/// Path of a built executable of this package (`vaultctl`, `vaultfs`), next to the test
/// binary; `VAULTFS_BIN_DIR` overrides.
public func productPath(_ name: String) -> String {
    if let dir = ProcessInfo.processInfo.environment["VAULTFS_BIN_DIR"] { return "\(dir)/\(name)" }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = (exe as NSString).deletingLastPathComponent
    if dir.hasSuffix(".xctest/Contents/MacOS") {
        dir = ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
    }
    return "\(dir)/\(name)"
}

/// Where `vaultctl` run by a test, and the tests themselves, keep host configuration (the
/// hooks of servers): the run's `VAULT_CONFIG_DIR` (scripts/test.sh makes one), else a folder
/// of this process's, set as its `VAULT_CONFIG_DIR`; never the machine's /etc/vaultfs, whose
/// hooks a test must not run.
public let testConfigDirectory: String = {
    if let given = ProcessInfo.processInfo.environment["VAULT_CONFIG_DIR"], given.hasPrefix("/") { return given }
    var template = Array("/tmp/vaultfs-etc-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    setenv("VAULT_CONFIG_DIR", made, 1)
    return made
}()

/// Runs `vaultctl` against a repository.
public struct Vaultctl {
    public let repository: String
    /// Set for every run, besides VAULT_REPO (a passphrase, a key file).
    public let environment: [String: String]

    public init(repository: String, environment: [String: String] = [:]) {
        self.repository = repository
        self.environment = environment
    }

    /// With VAULTFS_TEST_ENCRYPTION set (the second pass of `make test`), every repository a
    /// test makes with `init` is encrypted; VAULT_PASSPHRASE then comes from the environment.
    public static var encryptsByDefault: Bool { ProcessInfo.processInfo.environment["VAULTFS_TEST_ENCRYPTION"] != nil }

    private func prepared(_ arguments: [String]) -> [String] {
        guard Self.encryptsByDefault, arguments.first == "init", !arguments.contains("--encryption") else {
            return arguments
        }
        return arguments + ["--encryption", "aes-256-gcm"]
    }

    private var variables: [String: String] {
        environment.merging(["VAULT_REPO": repository, "VAULT_CONFIG_DIR": testConfigDirectory]) { a, _ in a }
    }

    @discardableResult
    public func run(_ arguments: String..., timeout: TimeInterval = 120) throws -> String {
        try run(arguments, timeout: timeout)
    }

    @discardableResult
    public func run(_ arguments: [String], timeout: TimeInterval = 120) throws -> String {
        try mustRun([productPath("vaultctl")] + prepared(arguments), environment: variables, timeout: timeout)
    }

    /// Starts `vaultctl` in the background (the caller stops or waits for it), its standard
    /// output going to `output` when given.
    public func start(_ arguments: [String], output: String? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productPath("vaultctl"))
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment.merge(variables) { _, new in new }
        environment["PATH"] = "/usr/bin:/bin"
        process.environment = environment
        let outputHandle = output.flatMap { FileHandle(forWritingAtPath: $0) }
        defer { try? outputHandle?.close() }
        process.standardOutput = outputHandle ?? FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Runs `vaultctl` whatever its exit status, with `extra` set besides this one's
    /// variables (`VAULTFS_FAULT`, say).
    public func attempt(_ arguments: [String], extra: [String: String] = [:], timeout: TimeInterval = 120) throws
        -> CommandResult
    {
        try runCommand(
            [productPath("vaultctl")] + prepared(arguments), environment: variables.merging(extra) { $1 },
            timeout: timeout)
    }

    /// `points --json` (or `history --json`) decoded.
    public func json(_ arguments: String...) throws -> [[String: Any]] { try json(arguments) }

    public func json(_ arguments: [String]) throws -> [[String: Any]] {
        let text = try mustRun([productPath("vaultctl")] + arguments + ["--json"], environment: variables)
        guard let value = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] else {
            throw TestError.failed("not a JSON array: \(text)")
        }
        return value
    }
}

extension Vaultctl {
    /// `vaultctl ARGUMENTS` that must fail: its one line of error. Throws when it succeeds
    /// or says more than one line.
    public func refusal(_ arguments: String...) throws -> String { try refusal(arguments) }

    /// `refusal` with the arguments in an array.
    public func refusal(_ arguments: [String]) throws -> String {
        let result = try attempt(arguments)
        guard result.status != 0 else { throw TestError.failed("\(arguments) succeeded: \(result.stdout)") }
        let text = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.contains("\n") else { throw TestError.failed("\(arguments) said more than one line: \(text)") }
        return text
    }
}
