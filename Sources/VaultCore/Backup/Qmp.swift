import Foundation
import Glibc
import Synchronization

/// A conversation with qemu (or qemu-storage-daemon) over its QMP socket: one command at a
/// time (others wait their turn), each answer awaited at most `timeout` seconds. Events qemu
/// sends meanwhile are skipped.
final class Qmp: Sendable {
    private let fd: Int32
    private let socket: String
    /// What qemu sent that is not read yet, and whether the conversation broke (an answer
    /// that did not come in time could still come, as the answer to the next command);
    /// held while a command waits for its answer.
    private let state = Mutex<(pending: [UInt8], broken: Bool)>(([], false))

    init(socket: String, timeout: Int = 10) throws {
        self.socket = socket
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Posix.error("cannot make a socket for QMP", socket) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socket.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw VaultError.invalid("the QMP socket path \(socket) is too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            throw VaultError(.unreachable, "cannot reach qemu's QMP socket \(socket): \(Posix.message(code))")
        }
        // From here `deinit` closes the socket, also when the greeting fails.
        self.fd = fd
        _ = try state.withLock { try message(&$0) } // the greeting
        _ = try execute("qmp_capabilities")
    }

    deinit { close(fd) }

    /// Runs a command and returns its `return` value; qemu's error is thrown with its text.
    @discardableResult
    func execute(_ command: String, _ arguments: [String: Any] = [:]) throws -> Any {
        var request: [String: Any] = ["execute": command]
        if !arguments.isEmpty { request["arguments"] = arguments }
        var bytes = [UInt8](try JSONSerialization.data(withJSONObject: request))
        bytes.append(10)
        let answer = try state.withLock { state -> [String: Any] in
            guard !state.broken else {
                throw VaultError(.unreachable, "qemu's QMP socket \(socket) stopped answering in step")
            }
            do {
                try bytes.withUnsafeBytes { try Posix.writeAll(fd, $0, path: socket) }
                while true {
                    let answer = try message(&state)
                    if answer["return"] != nil || answer["error"] != nil { return answer }
                }
            } catch {
                state.broken = true
                throw error
            }
        }
        if let error = answer["error"] as? [String: Any] {
            throw VaultError(.io, "qemu refused \(command): \(error["desc"] as? String ?? "\(error)")")
        }
        return answer["return"]!
    }

    /// The next JSON object qemu sends (one per line), skipping events.
    private func message(_ state: inout (pending: [UInt8], broken: Bool)) throws -> [String: Any] {
        while true {
            while !state.pending.contains(10) {
                var buffer = [UInt8](repeating: 0, count: 65536)
                let n = read(fd, &buffer, buffer.count)
                let code = errno
                if n < 0 && code == EINTR { continue }
                guard n > 0 else {
                    let why =
                        n == 0
                        ? "closed"
                        : code == EAGAIN || code == EWOULDBLOCK ? "did not answer in time" : Posix.message(code)
                    throw VaultError(.unreachable, "qemu's QMP socket \(socket): \(why)")
                }
                guard state.pending.count + n <= 16 << 20 else {
                    throw VaultError(.io, "qemu's QMP answer is too long")
                }
                state.pending += buffer[0..<n]
            }
            let end = state.pending.firstIndex(of: 10)!
            let line = Array(state.pending[..<end])
            state.pending.removeFirst(end + 1)
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw VaultError(.io, "qemu's QMP socket \(socket) sent what is not JSON")
            }
            if object["event"] != nil { continue }
            return object
        }
    }

    /// The block node an export serves: the export whose id or NBD name is `export`, or the
    /// node of that name.
    func node(of export: String) throws -> String {
        let exports = try execute("query-block-exports") as? [[String: Any]] ?? []
        if let node = exports.first(where: { $0["id"] as? String == export })?["node-name"] as? String { return node }
        let nodes = try execute("query-named-block-nodes", ["flat": true]) as? [[String: Any]] ?? []
        guard nodes.contains(where: { $0["node-name"] as? String == export }) else {
            throw VaultError(.diskMissing, "qemu at \(socket) has no export or block node '\(export)'")
        }
        return export
    }

    struct Bitmap {
        var name: String
        var recording: Bool
        /// Left inconsistent by a qemu that did not stop cleanly: it cannot be trusted.
        var inconsistent: Bool
    }

    /// The dirty bitmaps of a block node.
    func bitmaps(on node: String) throws -> [Bitmap] {
        let nodes = try execute("query-named-block-nodes", ["flat": true]) as? [[String: Any]] ?? []
        let found = nodes.first { $0["node-name"] as? String == node }
        return (found?["dirty-bitmaps"] as? [[String: Any]] ?? []).compactMap { bitmap in
            (bitmap["name"] as? String).map {
                Bitmap(
                    name: $0, recording: bitmap["recording"] as? Bool ?? false,
                    inconsistent: bitmap["inconsistent"] as? Bool ?? false)
            }
        }
    }

    /// Runs `actions` (`(type, data)`) as one transaction: all or none.
    func transaction(_ actions: [(String, [String: Any])]) throws {
        guard !actions.isEmpty else { return }
        try execute("transaction", ["actions": actions.map { ["type": $0.0, "data": $0.1] }])
    }
}
