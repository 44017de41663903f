internal import CSupport
import Foundation
import Glibc

/// Running in the background: the command starts itself again in a new session with a pipe
/// as fd 3, and returns once the child says the mount is up (or why it is not).
enum Detach {
    static func spawnAndWait(_ arguments: [String]) -> Int32 {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            return VaultfsCommand.fail("cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        setenv("VAULTFS_NOTIFY_FD", "3", 1)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? arguments[0]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { text in text.withCString { strdup($0) } } + [nil]
        defer { argv.forEach { free($0) } }
        let pid = argv.withUnsafeBufferPointer { vfs_spawn_detached(exe, $0.baseAddress!, fds[1]) }
        close(fds[1])
        guard pid > 0 else { return VaultfsCommand.fail("cannot start the daemon: \(String(cString: strerror(-pid)))") }
        var message = [UInt8]()
        var pollfd = Glibc.pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            guard poll(&pollfd, 1, 1000) >= 0 || errno == EINTR else { break }
            if pollfd.revents == 0 { continue }
            var byte: UInt8 = 0
            let n = read(fds[0], &byte, 1)
            if n <= 0 { break }
            if byte == 10 { break }
            message.append(byte)
        }
        close(fds[0])
        let text = String(decoding: message, as: UTF8.self)
        if text == "ready" { return 0 }
        kill(pid, SIGTERM)
        return VaultfsCommand.fail(text.isEmpty ? "the daemon did not start within 60 s" : text)
    }

    static func notifyReady(_ fd: Int32) {
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
