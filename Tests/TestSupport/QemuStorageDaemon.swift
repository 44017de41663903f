import Foundation

/// A real qemu-storage-daemon (Debian's qemu-system-common) serving qcow2 images as writable
/// NBD exports (`root`, and more when asked) on a unix socket, with a QMP socket, as a KVM
/// host's qemu does for a VM's disks. Stopped by `stop` and when the value goes away; a
/// watchdog outside this process stops it if the process dies first.
public final class QemuStorageDaemon {
    public let directory: String
    public let image: String
    public var nbdSocket: String { "\(directory)/nbd.sock" }
    public var qmpSocket: String { "\(directory)/qmp.sock" }
    /// The export's URI, for `--disk` and for `qemu-io`.
    public var uri: String { uri("root") }
    public func uri(_ export: String) -> String { "nbd+unix:///\(export)?socket=\(nbdSocket)" }
    /// The exports, each of its own image and block node (`node-EXPORT`).
    public let exports: [String]
    private var pid: Int32 = 0

    /// Makes a qcow2 image of `size` (e.g. "512M") in `directory`, lets `prepare` write it
    /// (qemu-io commands on the file itself), then serves it.
    public init(directory: String, size: String, prepare: [String] = [], exports: [String] = ["root"]) throws {
        self.directory = directory
        self.exports = exports
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        image = "\(directory)/root.qcow2"
        var arguments = ["--nbd-server", "addr.type=unix,addr.path=\(nbdSocket)"]
        for export in exports {
            let file = "\(directory)/\(export).qcow2"
            try mustRun(["qemu-img", "create", "-q", "-f", "qcow2", file, size])
            if !prepare.isEmpty {
                try mustRun(["qemu-io", "-f", "qcow2", file] + prepare.flatMap { ["-c", $0] }, timeout: 120)
            }
            arguments += [
                "--blockdev", "driver=file,node-name=file-\(export),filename=\(file)",
                "--blockdev", "driver=qcow2,node-name=node-\(export),file=file-\(export)",
                "--export", "type=nbd,id=\(export),node-name=node-\(export),name=\(export),writable=on",
            ]
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-storage-daemon")
        process.arguments =
            arguments + [
                "--chardev", "socket,id=qmp0,path=\(qmpSocket),server=on,wait=off", "--monitor", "chardev=qmp0",
            ]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        pid = process.processIdentifier
        let deadline = Date().addingTimeInterval(20)
        while !(FileManager.default.fileExists(atPath: qmpSocket) && FileManager.default.fileExists(atPath: nbdSocket))
        {
            guard Date() < deadline, process.isRunning else {
                stop()
                throw TestError.failed("qemu-storage-daemon did not start within 20 s")
            }
            usleep(20_000)
        }
        try startWatchdog("kill \(pid) 2>/dev/null")
    }

    deinit { stop() }

    /// Stops the daemon and waits (at most 10 s) until it is gone.
    public func stop() {
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        pid = 0
    }

    /// Runs qemu-io commands against an export, as a VM's writes would arrive.
    public func write(_ commands: [String], export: String = "root") throws {
        try mustRun(["qemu-io", "-f", "raw", uri(export)] + commands.flatMap { ["-c", $0] }, timeout: 120)
    }

    /// An export's bytes now, as a raw file.
    public func copy(to path: String, export: String = "root") throws {
        try mustRun(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri(export), path], timeout: 120)
    }

    /// One QMP command's `return`, through a small Python client.
    public func qmp(_ command: String, _ arguments: [String: Any] = [:]) throws -> Any {
        let request = try JSONSerialization.data(withJSONObject: ["execute": command, "arguments": arguments])
        let script = """
            import json, socket, sys
            s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1]); f = s.makefile("rw")
            f.readline(); f.write('{"execute":"qmp_capabilities"}\\n'); f.flush(); f.readline()
            f.write(sys.argv[2] + "\\n"); f.flush()
            while True:
                answer = json.loads(f.readline())
                if "return" in answer or "error" in answer: break
            print(json.dumps(answer))
            """
        let text = try mustRun(["python3", "-c", script, qmpSocket, String(decoding: request, as: UTF8.self)])
        let answer = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        guard let value = answer?["return"] else { throw TestError.failed("QMP \(command): \(text)") }
        return value
    }

    /// The names of the dirty bitmaps on an export's node.
    public func bitmaps(_ export: String = "root") throws -> [String] {
        let nodes = try qmp("query-named-block-nodes", ["flat": true]) as? [[String: Any]] ?? []
        let node = nodes.first { $0["node-name"] as? String == "node-\(export)" }
        return (node?["dirty-bitmaps"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.sorted()
    }

    /// The ids of the exports qemu serves now.
    public func exportIds() throws -> [String] {
        (try qmp("query-block-exports") as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }.sorted()
    }
}
