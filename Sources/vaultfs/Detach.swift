internal import CSupport
import Foundation
import Glibc

/// Running in the background: the command starts itself again in a new session with a pipe
/// as fd 3, and returns once the child says the mount is up (or why it is not).
enum Detach {
    static func spawnAndWait(_ arguments: [String]) -> Int32 {
        // fd 3 says ready or why not; the child's stderr comes here too until then, so what
        // libfuse and fusermount3 print on a failed mount (a /dev/fuse this user may not
        // open, say) reaches the user, not /dev/null.
        var fds: [Int32] = [0, 0]
        var errors: [Int32] = [0, 0]
        guard pipe(&fds) == 0, pipe(&errors) == 0 else {
            return VaultfsCommand.fail("cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        setenv("VAULTFS_NOTIFY_FD", "3", 1)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? arguments[0]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { text in text.withCString { strdup($0) } } + [nil]
        defer { argv.forEach { free($0) } }
        let pid = argv.withUnsafeBufferPointer { vfs_spawn_detached(exe, $0.baseAddress!, fds[1], errors[1]) }
        close(fds[1])
        close(errors[1])
        defer {
            close(fds[0])
            close(errors[0])
        }
        guard pid > 0 else { return VaultfsCommand.fail("cannot start the daemon: \(String(cString: strerror(-pid)))") }
        var message = [UInt8]()
        var said = [UInt8]()
        var polls = [
            Glibc.pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0),
            Glibc.pollfd(fd: errors[0], events: Int16(POLLIN), revents: 0),
        ]
        let deadline = Date().addingTimeInterval(60)
        var answered = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline && !answered {
            guard poll(&polls, 2, 1000) >= 0 || errno == EINTR else { break }
            if polls[1].revents != 0 {
                let n = read(errors[0], &buffer, buffer.count)
                if n > 0 {
                    // The last 16 KiB are enough to say why.
                    said.append(contentsOf: buffer[0..<n])
                    if said.count > 16 << 10 { said.removeFirst(said.count - (16 << 10)) }
                } else {
                    polls[1].fd = -1
                }
            }
            if polls[0].revents != 0 {
                var byte: UInt8 = 0
                let n = read(fds[0], &byte, 1)
                if n <= 0 || byte == 10 {
                    answered = true
                } else {
                    message.append(byte)
                }
            }
        }
        let text = String(decoding: message, as: UTF8.self)
        if text == "ready" { return 0 }
        kill(pid, SIGTERM)
        // What the daemon itself printed as it failed is `text`; the lines before it are
        // the reason it refers to.
        let lines = String(decoding: said, as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("vaultfs: ") }
        if !lines.isEmpty { FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8)) }
        return VaultfsCommand.fail(text.isEmpty ? "the daemon did not start within 60 s" : text)
    }

    static func notifyReady(_ fd: Int32) {
        // Standard error was the starting command's, which ends now.
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        if null >= 0 {
            dup2(null, STDERR_FILENO)
            close(null)
        }
        _ = "ready\n".withCString { write(fd, $0, 6) }
        close(fd)
        unsetenv("VAULTFS_NOTIFY_FD")
    }

    static func notifyFailure(_ fd: Int32, _ message: String) {
        let line = message.replacingOccurrences(of: "\n", with: " ") + "\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }
}
