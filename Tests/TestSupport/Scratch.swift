import Foundation

/// A temporary directory removed when the value goes away.
public final class Scratch {
    public let path: String

    public init(_ label: String = "test") {
        // Every test that makes files has this process's host configuration set first.
        _ = testConfigDirectory
        var template = Array("/tmp/vaultfs-\(label)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func file(_ name: String) -> String { "\(path)/\(name)" }
}

/// What a finished command printed and returned.
public struct CommandResult {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var timedOut: Bool
}

public enum TestError: Error, CustomStringConvertible {
    case failed(String)
    public var description: String {
        if case .failed(let text) = self { return text }
        return ""
    }
}

/// `root`, every process under it, and every process in a process group one of them leads,
/// from /proc. Foundation starts a command in a group of its own, so what it left to init
/// (a double fork) is still found by its group.
public func processTree(_ root: pid_t) -> [pid_t] {
    var children: [pid_t: [pid_t]] = [:]
    var groups: [pid_t: [pid_t]] = [:]
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
            let name = stat.lastIndex(of: ")")
        else { continue }
        // After the name: the state, the parent's pid, the process group.
        let fields = stat[stat.index(after: name)...].split(separator: " ")
        guard fields.count > 2, let parent = pid_t(fields[1]), let group = pid_t(fields[2]) else { continue }
        children[parent, default: []].append(pid)
        groups[group, default: []].append(pid)
    }
    var tree = [root]
    var seen: Set<pid_t> = [root]
    var next = 0
    while next < tree.count {
        for pid in (children[tree[next]] ?? []) + (groups[tree[next]] ?? []) where seen.insert(pid).inserted {
            tree.append(pid)
        }
        next += 1
    }
    return tree
}

/// Runs a program to completion, killing it after `timeout` seconds. Output goes through
/// files, so a chatty program cannot block on a full pipe.
@discardableResult
public func runCommand(
    _ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 120,
    stdinPath: String? = nil
) throws -> CommandResult {
    let scratch = Scratch("cmd")
    let out = scratch.file("out")
    let err = scratch.file("err")
    guard FileManager.default.createFile(atPath: out, contents: nil) else {
        throw TestError.failed("cannot create \(out)")
    }
    guard FileManager.default.createFile(atPath: err, contents: nil) else {
        throw TestError.failed("cannot create \(err)")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0].hasPrefix("/") ? arguments[0] : "/usr/bin/env")
    process.arguments = arguments[0].hasPrefix("/") ? Array(arguments.dropFirst()) : arguments
    var env = ProcessInfo.processInfo.environment
    env["PATH"] = (env["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    for (key, value) in environment { env[key] = value }
    process.environment = env
    // The handles are closed here, not left to Foundation: left open, every command leaked
    // two descriptors, and past about 1,300 of them `Process.run` overran a buffer.
    let handles = [FileHandle(forWritingAtPath: out), FileHandle(forWritingAtPath: err)]
    let input = stdinPath.flatMap { FileHandle(forReadingAtPath: $0) }
    defer { for handle in handles + [input] { try? handle?.close() } }
    process.standardOutput = handles[0]
    process.standardError = handles[1]
    process.standardInput = input ?? FileHandle.nullDevice
    let done = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in done.signal() }
    try process.run()
    var timedOut = false
    if done.wait(timeout: .now() + timeout) == .timedOut {
        timedOut = true
        // The command and everything it started (a browser under its driver): stopped first,
        // so that none can start another or be handed to init unseen, then killed.
        var tree: Set<pid_t> = []
        for _ in 0..<3 {
            for pid in processTree(process.processIdentifier) where tree.insert(pid).inserted { kill(pid, SIGSTOP) }
        }
        for pid in tree { kill(pid, SIGKILL) }
        _ = done.wait(timeout: .now() + 10)
    }
    return CommandResult(
        status: timedOut ? -1 : process.terminationStatus,
        stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "", timedOut: timedOut)
}

/// Runs a program and throws unless it exits 0.
@discardableResult
public func mustRun(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 120) throws
    -> String
{
    let result = try runCommand(arguments, environment: environment, timeout: timeout)
    guard result.status == 0 else {
        throw TestError.failed(
            "\(arguments.joined(separator: " ")) exited \(result.status)\(result.timedOut ? " (timed out)" : ""): \(result.stderr)\(result.stdout)"
        )
    }
    return result.stdout
}

/// Deterministic pseudo-random bytes (xorshift), so images differ but tests repeat.
public func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed
    var bytes = [UInt8](repeating: 0, count: count)
    for i in stride(from: 0, to: count, by: 8) {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        withUnsafeBytes(of: state) { word in
            for j in 0..<min(8, count - i) { bytes[i + j] = word[j] }
        }
    }
    return bytes
}

public func readBytes(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { throw TestError.failed("cannot read \(path)") }
    return [UInt8](data)
}

/// Allocated bytes of a file (st_blocks * 512).
public func allocatedBytes(_ path: String) -> Int64 {
    var st = stat()
    guard stat(path, &st) == 0 else { return -1 }
    return Int64(st.st_blocks) * 512
}

/// Runs the shell command `cleanup` once this test process is gone, however it ended (a crash,
/// SIGKILL): from a process of its own session that waits for this one, so no daemon a test
/// started outlives the tests.
public func startWatchdog(_ cleanup: String) throws {
    let guardian = Process()
    guardian.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
    guardian.arguments = ["-f", "bash", "-c", "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; \(cleanup)"]
    guardian.standardInput = FileHandle.nullDevice
    guardian.standardOutput = FileHandle.nullDevice
    guardian.standardError = FileHandle.nullDevice
    try guardian.run()
}
