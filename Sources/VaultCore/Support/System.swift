internal import CSupport
import Foundation

/// Facts about the machine and this process the cache sizes itself by.
public enum System {
    public static let coreCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// This process's resident memory now (program, libraries and heap), from
    /// /proc/self/statm; nil where it cannot be read.
    public static func residentBytes() -> Int? {
        // A /proc file says it is empty to stat, so it is read without its size.
        guard let fd = try? Posix.open("/proc/self/statm", O_RDONLY) else { return nil }
        defer { close(fd) }
        var text = [UInt8](repeating: 0, count: 256)
        guard
            let n = try? text.withUnsafeMutableBytes({
                try Posix.pread(fd, $0.baseAddress!, $0.count, 0, path: "/proc/self/statm")
            }),
            let field = String(decoding: text[..<n], as: UTF8.self).split(separator: " ").dropFirst().first,
            let pages = Int(field)
        else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

extension System {
    /// Runs `/bin/sh -c command` with `environment` and waits for it: its exit status, or 128
    /// plus the signal that ended it. posix_spawn and waitpid: Foundation's `Process` waits in
    /// steps of 50 ms, which a server's freeze window would pay twice.
    public static func runShell(_ command: String, environment: [String: String]) throws -> Int32 {
        let arguments = ["/bin/sh", "-c", command]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // Only stdin, stdout and stderr go to the command: a hook that leaves a process behind
        // must not keep this one's locks or files open.
        let pid = vfs_spawn("/bin/sh", argv, envp)
        guard pid > 0 else { throw VaultError(.io, "cannot run /bin/sh: \(Posix.message(-pid))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw VaultError(.io, "cannot wait for /bin/sh: \(Posix.message(errno))") }
        }
        // WIFEXITED and WEXITSTATUS are macros Swift does not import.
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
