import Foundation

/// The real `vaultfs` binary mounted as a child process. It is unmounted (and the daemon
/// stopped) in every outcome: by `unmount()`, or when the value goes away.
public final class MountedRepository {
    public let mountpoint: String
    private let process: Process
    private let log: String
    private var mounted = true

    /// Mounts and waits (at most `timeout` seconds) until the kernel shows the mount; as
    /// `user` when given (who must own the mount point). `environment` is added to this
    /// process's for the daemon.
    public init(
        repository: String, at mountpoint: String, options: [String] = [], timeout: TimeInterval = 20,
        as user: TestUser? = nil, environment: [String: String] = [:]
    ) throws {
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        if let user { chown(mountpoint, user.uid, user.gid) }
        self.mountpoint = mountpoint
        log = mountpoint + ".log"
        guard FileManager.default.createFile(atPath: log, contents: nil) else {
            throw TestError.failed("cannot create \(log)")
        }
        process = Process()
        let arguments =
            [productPath("vaultfs"), repository, mountpoint, "-f"]
            + (options.isEmpty ? [] : ["-o", options.joined(separator: ",")])
        let command = user?.command(arguments) ?? arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        // The child has its own copy of the log's descriptor once it runs; ours is closed.
        let logHandle = FileHandle(forWritingAtPath: log)
        defer { try? logHandle?.close() }
        process.standardError = logHandle
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while !Self.isMounted(mountpoint) {
            if !process.isRunning {
                mounted = false
                throw TestError.failed("vaultfs exited before mounting: \(logText)")
            }
            if Date() > deadline {
                unmount()
                throw TestError.failed("vaultfs did not mount within \(timeout) s: \(logText)")
            }
            usleep(20_000)
        }
    }

    deinit { unmount() }

    public var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    public func path(_ relative: String) -> String { "\(mountpoint)/\(relative)" }

    /// Unmounts, lazily if the plain unmount is refused, and stops the daemon; bounded.
    public func unmount() {
        guard mounted else { return }
        mounted = false
        if Self.isMounted(mountpoint) {
            _ = try? runCommand(["fusermount3", "-u", mountpoint], timeout: 10)
            if Self.isMounted(mountpoint) { _ = try? runCommand(["fusermount3", "-uz", mountpoint], timeout: 10) }
        }
        let deadline = Date().addingTimeInterval(15)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Whether the daemon is still running (it must survive bad reads).
    public var isRunning: Bool { process.isRunning }

    /// Kills the daemon and waits for it, leaving its mount behind dead, as a crash would;
    /// `unmount()` (or the value going away) still clears it.
    public func killDaemon() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The kernel's view of this mount, from /proc/self/mountinfo: its source (unescaped),
    /// the mount's own flags (`nosuid`, `nodev`, ...) and the filesystem's options
    /// (`allow_other`, ...); nil when nothing is mounted here.
    public var kernelView: (source: String, flags: Set<String>, options: Set<String>)? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        let target =
            realpath(mountpoint, nil).map { p -> String in
                defer { free(p) }
                return String(cString: p)
            } ?? mountpoint
        for line in text.split(separator: "\n").reversed() {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count > 5, Self.unescaped(fields[4]) == target, let dash = fields.firstIndex(of: "-"),
                dash + 3 < fields.count
            else { continue }
            return (
                Self.unescaped(fields[dash + 2]), Set(fields[5].split(separator: ",").map(String.init)),
                Set(fields[dash + 3].split(separator: ",").map(String.init))
            )
        }
        return nil
    }

    /// A mountinfo field as it was (the kernel writes space, tab, newline and backslash as
    /// a backslash and three octal digits).
    static func unescaped(_ field: String) -> String {
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\"), i + 3 < raw.count,
                let value = UInt8(String(decoding: raw[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Runs mount I/O in this process with a bound: when `body` does not finish in time, the
    /// mount is torn down (which fails its pending requests) and the test gets an error.
    @discardableResult
    public func io<T>(timeout: TimeInterval = 30, _ body: @escaping () throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        // The thread runs `body` and writes `result` before it signals; this function reads
        // `result` only after that signal, so neither is touched by two threads at once.
        nonisolated(unsafe) var result: Result<T, Error>?
        nonisolated(unsafe) let body = body
        Thread.detachNewThread {
            result = Result { try body() }
            done.signal()
        }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            unmount()
            _ = done.wait(timeout: .now() + 10)
            throw TestError.failed("mount I/O did not finish within \(timeout) s; the daemon was stopped")
        }
        return try result!.get()
    }

    /// Whether `relative` exists in the mount, asked with a bound (see `io`).
    public func exists(_ relative: String, timeout: TimeInterval = 10) throws -> Bool {
        let full = path(relative)
        return try io(timeout: timeout) { FileManager.default.fileExists(atPath: full) }
    }

    /// The target of a symlink in the mount, read with a bound.
    public func linkTarget(_ relative: String, timeout: TimeInterval = 10) throws -> String {
        let full = path(relative)
        return try io(timeout: timeout) { try FileManager.default.destinationOfSymbolicLink(atPath: full) }
    }

    /// Reads /proc/self/mountinfo only: resolving the parent folder, never the mount point
    /// itself, so a hung daemon cannot make this call hang.
    public static func isMounted(_ path: String) -> Bool {
        let url = URL(fileURLWithPath: path)
        let parent = url.deletingLastPathComponent().path
        let resolvedParent =
            realpath(parent, nil).map { p -> String in
                defer { free(p) }
                return String(cString: p)
            } ?? parent
        let resolved = (resolvedParent == "/" ? "" : resolvedParent) + "/" + url.lastPathComponent
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains {
            $0.split(separator: " ").dropFirst(4).first.map(String.init) == resolved
        }
    }
}

/// Waits until `condition` holds, polling; false when `timeout` passes first.
public func eventually(timeout: TimeInterval, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    repeat {
        if try condition() { return true }
        usleep(50_000)
    } while Date() < deadline
    return false
}
