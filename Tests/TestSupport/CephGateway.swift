import Foundation

/// A real single-node Ceph with its S3 gateway on 127.0.0.1 (`scripts/ceph-rgw.sh`),
/// started once per test process on first use, in one temporary folder. It is stopped when
/// the process exits, and a watchdog outside the process stops it and removes the folder if
/// the process dies first, so no daemon outlives the tests in any outcome.
public final class CephGateway: Sendable {
    public let directory: String
    public let endpoint: String
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION and VAULT_S3_ENDPOINT.
    public let environment: [String: String]
    private let script: String

    private static let lock = NSLock()
    /// Guarded by `lock`.
    nonisolated(unsafe) private static var started: Result<CephGateway, Error>?

    /// The gateway of this test process, started on first use.
    public static func shared() throws -> CephGateway {
        lock.lock()
        defer { lock.unlock() }
        if started == nil {
            started = Result { try CephGateway() }
            if case .success = started! { atexit { CephGateway.stopShared() } }
        }
        return try started!.get()
    }

    private static func stopShared() {
        if case .success(let gateway)? = started { gateway.stop() }
    }

    private init() throws {
        let top = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        script = "\(top)/scripts/ceph-rgw.sh"
        var template = Array("/tmp/vaultfs-ceph-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        // The watchdog: stops the cluster once this process is gone, however it ended.
        try startWatchdog("\"\(script)\" stop \"\(directory)\" >/dev/null 2>&1; rm -rf \"\(directory)\"")
        let result = try runCommand([script, "start", directory], timeout: 150)
        guard result.status == 0 else {
            _ = try? runCommand([script, "stop", directory], timeout: 90)
            throw TestError.failed("the Ceph gateway did not start: \(result.stderr)\(result.stdout)")
        }
        let values = Self.assignments(try String(contentsOfFile: "\(directory)/env", encoding: .utf8))
        guard let endpoint = values["VAULT_S3_ENDPOINT"], values["AWS_ACCESS_KEY_ID"] != nil else {
            throw TestError.failed("the Ceph gateway wrote no endpoint or credentials in \(directory)/env")
        }
        self.endpoint = endpoint
        environment = values.filter {
            ["VAULT_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"].contains($0.key)
        }
        // Credentials as an administrator would set them: in the environment of every command
        // and daemon the tests start (never on a command line).
        for (key, value) in environment where key.hasPrefix("AWS_") { setenv(key, value, 1) }
    }

    /// Stops the gateway (the cluster stays up): the store is unreachable until `resume`.
    public func pause() throws { try mustRun([script, "pause-gateway", directory], timeout: 60) }
    public func resume() throws { try mustRun([script, "resume-gateway", directory], timeout: 120) }

    public func stop() { _ = try? runCommand([script, "stop", directory], timeout: 90) }

    /// Temporary credentials of the test user, as `aws sts assume-role` gives them: an
    /// assumed role's AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, valid
    /// for an hour.
    public func assumeRole() throws -> [String: String] {
        let values = Self.assignments(try mustRun([script, "assume-role", directory], timeout: 90))
        guard values.count == 3 else { throw TestError.failed("assume-role gave \(values.keys.sorted())") }
        return values
    }

    /// The `NAME=value` lines the script writes, a value's quotes taken off.
    private static func assignments(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 {
                values[parts[0]] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
            }
        }
        return values
    }

    /// The cluster's configuration file, for `rbd -c` and `--ceph-conf`.
    public var conf: String { "\(directory)/ceph.conf" }

    /// A pool for RBD images, made on first use (idempotent).
    public func rbdPool(_ name: String = "rbd") throws {
        try mustRun([script, "create-rbd-pool", directory, name], timeout: 90)
    }

    /// Runs the `rbd` command on this cluster.
    @discardableResult
    public func rbd(_ arguments: String...) throws -> String {
        try mustRun(["rbd", "-c", conf] + arguments, timeout: 120)
    }

    /// Writes to (`w:OFFSET:LENGTH:SEED`), discards from (`d:OFFSET:LENGTH`) or makes
    /// (`create:SIZE`) an image through librbd (`scripts/rbd-write.py`).
    public func rbdWrite(pool: String = "rbd", _ image: String, _ operations: [String]) throws {
        let top = (script as NSString).deletingLastPathComponent
        try mustRun(["/usr/bin/python3", "\(top)/rbd-write.py", conf, pool, image] + operations, timeout: 120)
    }

    /// The names of an image's snapshots.
    public func snapshots(pool: String = "rbd", _ image: String) throws -> [String] {
        let text = try rbd("snap", "ls", "--format", "json", "\(pool)/\(image)")
        let list = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] ?? []
        return list.compactMap { $0["name"] as? String }.sorted()
    }

    /// The bytes the OSD has sent in answer to reads since it started (its `op_r_out_bytes`).
    public func osdReadBytes() throws -> Int64 {
        let text = try mustRun(
            ["ceph", "--admin-daemon", "\(directory)/run/ceph-osd.0.asok", "perf", "dump"], timeout: 30)
        let dump = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        guard let osd = dump?["osd"] as? [String: Any], let bytes = (osd["op_r_out_bytes"] as? NSNumber)?.int64Value
        else { throw TestError.failed("the OSD's perf dump has no op_r_out_bytes") }
        return bytes
    }

    /// A new bucket name no other test uses.
    public func newBucket(_ label: String) -> String {
        "vaultfs-\(label)-\(UInt32.random(in: 0...UInt32.max))"
    }
}
