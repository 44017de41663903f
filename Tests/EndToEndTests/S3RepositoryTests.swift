import Foundation
import TestSupport
import XCTest

@testable import VaultCore

/// Repositories in a bucket of a real Ceph RADOS Gateway, used as a user would: `vaultctl`
/// with an `s3://` URL, `vaultfs` mounting it, a second host with a state folder of its own,
/// encryption, and a gateway that stops in the middle.
final class S3RepositoryTests: XCTestCase {
    var gateway: CephGateway!
    var scratch: Scratch!
    var url: String!

    override func setUpWithError() throws {
        gateway = try CephGateway.shared()
        scratch = Scratch("s3repo")
        url = "s3://\(gateway.newBucket("repo"))/backups/site-a"
    }

    override func tearDown() {
        scratch = nil
        super.tearDown()
    }

    /// A host: `vaultctl` on the repository with its own state folder.
    func host(_ name: String, environment: [String: String] = [:]) -> Vaultctl {
        Vaultctl(
            repository: url,
            environment: gateway.environment.merging(["VAULT_STATE_DIR": scratch.file("state-\(name)")]) { $1 }
                .merging(environment) { $1 })
    }

    func mount(_ name: String, state: String, options: [String] = []) throws -> MountedRepository {
        try MountedRepository(
            repository: url, at: scratch.file("mnt-\(name)"),
            options: ["s3_endpoint=\(gateway.endpoint)", "state_dir=\(scratch.file("state-\(state)"))"] + options)
    }

    func testBackupsMountAndVerifyOnS3AndAFreshHostSeesEveryPoint() throws {
        let ctl = host("a")
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M",
            files: [
                "etc/hostname": Array("web\n".utf8), "data/base.bin": pseudoRandomBytes(1 << 20, seed: 1),
            ])
        try ctl.run("init", url, "--chunk-size", "64K")
        try ctl.run(
            "vault", "create", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "2")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        // A full and an incremental by the schedule, then a manual point.
        let slot = Calendar.current.date(byAdding: .hour, value: 24 + 16, to: Calendar.current.startOfDay(for: Date()))!
        var names: [String] = []
        var asItWas: [String] = []
        for k in 0..<3 {
            try disk.write("data/change-\(k).bin", pseudoRandomBytes(150_000 + 1000 * k, seed: UInt64(10 + k)))
            let copy = scratch.file("as-it-was-\(k).img")
            try disk.snapshot(to: copy)
            asItWas.append(copy)
            if k < 2 {
                try ctl.run(
                    "schedule", "run", "--once", "--now", isoLocal(slot.addingTimeInterval(Double(k) * 4 * 3600)))
            } else {
                try ctl.run("backup", "web", "--name", "manual")
            }
            let made = try ctl.json("points").map { $0["name"] as! String }.filter { !names.contains($0) }
            XCTAssertEqual(made.count, 1)
            names += made
        }
        let points = try ctl.json("points")
        let types = Dictionary(uniqueKeysWithValues: points.map { ($0["name"] as! String, $0["type"] as! String) })
        XCTAssertEqual(names.map { types[$0] }, ["Full", "Incremental", "Full"])
        XCTAssertEqual(Set(points.map { $0["location"] as? String }), [url])
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))

        // The mount shows every image byte for byte, and fsck finds them clean.
        do {
            let mounted = try mount("a", state: "a")
            for (name, copy) in zip(names, asItWas) {
                try mounted.io(timeout: 60) { try mustRun(["cmp", mounted.path("prod/web/\(name)/root.img"), copy]) }
            }
            try mounted.io(timeout: 60) { try Ext4Image.check(mounted.path("prod/web/\(names[1])/root.img")) }
            XCTAssertEqual(
                try mounted.io { try readBytes(mounted.path("prod/web/\(names[0])/files/root/etc/hostname")) },
                Array("web\n".utf8))
            // mkdir takes a backup now, into the bucket.
            try mounted.io {
                try FileManager.default.createDirectory(
                    atPath: mounted.path("prod/web/now"), withIntermediateDirectories: false)
            }
            XCTAssertTrue(try eventually(timeout: 60) { try mounted.exists("prod/web/now/root.img") })
            try mounted.io(timeout: 60) { try mustRun(["cmp", mounted.path("prod/web/now/root.img"), disk.path]) }
            mounted.unmount()
        }

        // Another host: a state folder that has never seen the bucket lists every point and
        // mounts identical images at once.
        let other = host("b")
        XCTAssertEqual(
            try other.json("points").map { $0["id"] as? String }, try ctl.json("points").map { $0["id"] as? String })
        XCTAssertEqual(try other.json("points").count, 4)
        let second = try mount("b", state: "b")
        for (name, copy) in zip(names + ["now"], asItWas + [disk.path]) {
            try second.io(timeout: 60) { try mustRun(["cmp", second.path("prod/web/\(name)/root.img"), copy]) }
        }
        second.unmount()
        // Deletion and collection work on the bucket: purging the manual point marks its chunks
        // (removed after the grace period; see testCollectionRemovesOnlyAfterItsGrace…), and
        // every other point still verifies and exports identical.
        try ctl.run("delete", "web/manual")
        try ctl.run("purge")
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
        try ctl.run("export", "web/\(names[1])", "-o", scratch.file("export.img"))
        try mustRun(["cmp", scratch.file("export.img"), asItWas[1]])
    }

    /// Temporary credentials (an assumed role's key, secret and session token, as on an EC2
    /// instance or after `aws sts assume-role`), from the environment and from a profile, for
    /// `vaultctl` and the mount.
    /// `restore --instant` from a bucket: the image reads the point at once and the fill
    /// completes into a target that holds the point and the writes made meanwhile.
    func testAnInstantRestoreFromTheBucketFillsTheTarget() throws {
        let restores = scratch.file("restores")
        let ctl = host("a", environment: ["VAULT_RESTORE_DIR": restores])
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "32M", files: ["data/a.bin": pseudoRandomBytes(8 << 20, seed: 4)])
        try ctl.run("init", url, "--chunk-size", "64K")
        try ctl.run("server", "add", "web", "--disk", "root=\(disk.path)")
        try ctl.run("backup", "web", "--name", "one")
        let mounted = try MountedRepository(
            repository: url, at: scratch.file("mnt-instant"),
            options: [
                "s3_endpoint=\(gateway.endpoint)", "state_dir=\(scratch.file("state-a"))", "restore_fill_rate=2M",
            ], environment: ["VAULT_RESTORE_DIR": restores])
        let target = scratch.file("target.raw")
        let text = try ctl.run("restore", "web/one", "--to", target, "--instant", "--json")
        let view = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
        let id = try XCTUnwrap(view["id"] as? String)
        let image = try XCTUnwrap(view["image"] as? String, text)
        var expected = try readBytes(disk.path)
        let written = pseudoRandomBytes(5000, seed: 6)
        try mounted.io(timeout: 60) {
            let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: image))
            defer { try? handle.close() }
            try handle.seek(toOffset: 1 << 20)
            try handle.write(contentsOf: Data(written))
            try handle.synchronize()
        }
        expected.replaceSubrange((1 << 20)..<((1 << 20) + written.count), with: written)
        // The gateway goes away mid-fill: the fill waits and says why, and goes on when it is back.
        try gateway.pause()
        var paused = true
        defer { if paused { try? gateway.resume() } }
        // vaultctl needs the store to open the repository; status.json beside the image does not.
        let status = (image as NSString).deletingLastPathComponent + "/status.json"
        func shown() throws -> [String: Any] {
            try mounted.io(timeout: 30) {
                let handle = try XCTUnwrap(FileHandle(forReadingAtPath: status))
                defer { try? handle.close() }
                return try XCTUnwrap(
                    JSONSerialization.jsonObject(with: try handle.readToEnd() ?? Data()) as? [String: Any])
            }
        }
        XCTAssertTrue(
            try eventually(timeout: 60) {
                (try shown()["error"] as? String ?? "").contains("waiting for the store")
            })
        XCTAssertEqual(try shown()["state"] as? String, "filling")
        XCTAssertTrue(mounted.isRunning)
        try gateway.resume()
        paused = false
        XCTAssertTrue(try eventually(timeout: 60) { try shown()["error"] == nil })
        try mounted.io(timeout: 60) { XCTAssertEqual(try readBytes(image), expected) }
        let deadline = Date().addingTimeInterval(60)
        while try ctl.json("restore", "status", id).first?["state"] as? String != "complete" {
            guard Date() < deadline else { throw TestError.failed("not complete: \(mounted.logText)") }
            usleep(100_000)
        }
        try ctl.run("restore", "finish", id)
        XCTAssertEqual(try readBytes(target), expected)
        mounted.unmount()
    }

    func testTemporaryCredentialsOfAnAssumedRoleWorkFromTheEnvironmentAndFromAProfile() throws {
        let session = try gateway.assumeRole()
        XCTAssertNotEqual(session["AWS_ACCESS_KEY_ID"], gateway.environment["AWS_ACCESS_KEY_ID"])
        let (ctl, disk) = try repositoryWithOnePoint(session)
        do {
            let mounted = try MountedRepository(
                repository: url, at: scratch.file("mnt-a"),
                options: ["s3_endpoint=\(gateway.endpoint)", "state_dir=\(scratch.file("state-a"))"],
                environment: session)
            try mounted.io(timeout: 60) { try mustRun(["cmp", mounted.path("prod/web/first/root.img"), disk.path]) }
            mounted.unmount()
        }

        // The same credentials as `aws configure` writes them, in a profile.
        let file = scratch.file("credentials")
        try """
        [default]
        aws_access_key_id = not-this-one
        aws_secret_access_key = not-this-one

        [backup]
        aws_access_key_id = \(session["AWS_ACCESS_KEY_ID"]!)
        aws_secret_access_key = \(session["AWS_SECRET_ACCESS_KEY"]!)
        aws_session_token = \(session["AWS_SESSION_TOKEN"]!)

        """.write(toFile: file, atomically: true, encoding: .utf8)
        let profile = host(
            "a",
            environment: [
                "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
                "AWS_SHARED_CREDENTIALS_FILE": file, "AWS_PROFILE": "backup",
            ])
        try disk.write("data/more.bin", pseudoRandomBytes(200_000, seed: 6))
        try profile.run("backup", "web", "--name", "second")
        XCTAssertEqual(try ctl.json("points").compactMap { $0["name"] as? String }.sorted(), ["first", "second"])
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
    }

    /// The key of an assumed role without its token, with a damaged token, or with one that
    /// would break the request's header: one line each, and nothing written.
    func testAMissingDamagedOrMalformedSessionTokenIsRefusedWithOneLineAndNothingWritten() throws {
        let session = try gateway.assumeRole()
        let (ctl, _) = try repositoryWithOnePoint(session)
        let token = session["AWS_SESSION_TOKEN"]!
        for (label, bad, says) in [
            ("no token", "", "AWS_SESSION_TOKEN"),
            ("damaged", String(token.dropLast(8)) + "AAAAAAAA", "refused"),
            ("line break", "abc\ndef", "control character"),
        ] {
            let result = try host("a", environment: session.merging(["AWS_SESSION_TOKEN": bad]) { $1 })
                .attempt(["backup", "web", "--name", "second"])
            XCTAssertNotEqual(result.status, 0, label)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(label): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(says), "\(label): \(result.stderr)")
        }
        XCTAssertEqual(try ctl.json("points").compactMap { $0["name"] as? String }, ["first"])
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
    }

    /// A repository made in this test's bucket with `environment`'s credentials, holding one
    /// point ("first") of a small disk; the host and the disk.
    private func repositoryWithOnePoint(_ environment: [String: String]) throws -> (Vaultctl, Ext4Image) {
        let ctl = host("a", environment: environment)
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "16M",
            files: [
                "etc/hostname": Array("web\n".utf8), "data/base.bin": pseudoRandomBytes(300_000, seed: 5),
            ])
        try ctl.run("init", url, "--chunk-size", "64K")
        try ctl.run("vault", "create", "prod")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        try ctl.run("backup", "web", "--name", "first")
        return (ctl, disk)
    }

    func testEncryptedBucketHoldsNoPlainDataAndNoPlainChunkNames() throws {
        let marker = Array("VAULTFS-S3-SECRET-MARKER-77c2".utf8)
        let ctl = host("a", environment: ["VAULT_PASSPHRASE": "bucket passphrase"])
        let disk = try Ext4Image.make(
            at: scratch.file("d.img"), size: "16M",
            files: [
                "secret.txt": Array(repeating: marker + [10], count: 3000).flatMap { $0 }
            ])
        try ctl.run("init", url, "--encryption", "aes-256-gcm", "--chunk-size", "64K")
        try ctl.run("server", "add", "db", "--disk", "root=\(disk.path)")
        try ctl.run("backup", "db", "--name", "one")
        let store = try S3Store(
            try S3Location(url: url, environment: gateway.environment), environment: gateway.environment)
        let objects = try store.list(prefix: "")
        XCTAssertGreaterThan(objects.count, 5)
        let plain = try readBytes(disk.path)
        var plainIds = Set<String>()
        for start in stride(from: 0, to: plain.count, by: 64 << 10) {
            let chunk = Array(plain[start..<min(start + (64 << 10), plain.count)])
            plainIds.insert(chunk.withUnsafeBytes { ChunkHash(of: $0) }.hex)
        }
        for object in objects {
            let bytes = try XCTUnwrap(try store.get(object.key, limit: 8 << 20))
            XCTAssertNil(bytes.firstRange(of: marker), object.key)
            XCTAssertFalse(plainIds.contains(String(object.key.split(separator: "/").last!)), object.key)
        }
        // A wrong passphrase is refused with one line before anything is read.
        let wrong = try host("a", environment: ["VAULT_PASSPHRASE": "not it"]).attempt(["points"])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.stderr.contains("wrong passphrase"), wrong.stderr)
        XCTAssertEqual(wrong.stderr.split(separator: "\n").count, 1, wrong.stderr)
        // And the right one reads everything, here and on a new host.
        try ctl.run("export", "db/one", "-o", scratch.file("out.img"))
        try mustRun(["cmp", scratch.file("out.img"), disk.path])
        let other = host("b", environment: ["VAULT_PASSPHRASE": "bucket passphrase"])
        try other.run("export", "db/one", "-o", scratch.file("out-b.img"))
        try mustRun(["cmp", scratch.file("out-b.img"), disk.path])
    }

    func testGatewayStoppedMidBackupFailsCleanlyAndReadsRecoverWhenItReturns() throws {
        let ctl = host("a")
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M",
            files: [
                "data/base.bin": pseudoRandomBytes(3 << 20, seed: 3)
            ])
        try ctl.run("init", url, "--chunk-size", "64K")
        // The freeze hook holds the backup long enough to stop the gateway under it.
        try ctl.run("server", "add", "web", "--disk", "root=\(disk.path)", "--freeze-command", "sleep 2")
        try ctl.run("backup", "web", "--name", "before")
        let before = scratch.file("before.img")
        try disk.snapshot(to: before)
        let mounted = try mount("a", state: "a")
        defer { mounted.unmount() }

        // The gateway stops while a backup waits in its freeze hook: the backup fails with
        // one line, and reads through the mount fail with EIO while the mount stays up.
        try disk.write("data/new.bin", pseudoRandomBytes(2 << 20, seed: 4))
        let backup = try ctl.start(["backup", "web", "--name", "cut"], output: scratch.file("cut.out"))
        defer { if backup.isRunning { kill(backup.processIdentifier, SIGKILL) } }
        XCTAssertTrue(
            try eventually(timeout: 20) { try ctl.json("points").contains { $0["status"] as? String == "Creating" } })
        try gateway.pause()
        var paused = true
        defer { if paused { try? gateway.resume() } }
        XCTAssertTrue(eventually(timeout: 60) { !backup.isRunning })
        XCTAssertNotEqual(backup.terminationStatus, 0)
        let read = try runCommand(["cmp", mounted.path("default/web/before/root.img"), before], timeout: 60)
        XCTAssertNotEqual(read.status, 0)
        XCTAssertTrue(read.stderr.contains("Input/output error"), read.stderr)
        XCTAssertTrue(MountedRepository.isMounted(mounted.mountpoint))

        // Back: the same reads succeed without a remount, and the next backup works.
        try gateway.resume()
        paused = false
        try mounted.io(timeout: 60) { try mustRun(["cmp", mounted.path("default/web/before/root.img"), before]) }
        try ctl.run("backup", "web", "--name", "after")
        try ctl.run("export", "web/after", "-o", scratch.file("after.img"))
        try mustRun(["cmp", scratch.file("after.img"), disk.path])
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
        let history = try ctl.json("history")
        XCTAssertEqual(history.map { $0["status"] as? String }, ["Active", "Error", "Active"])
    }

    /// The mount's disk cache: bounded, owner-only, sealed-as-stored, read from while the
    /// gateway is away, and a damaged copy fetched again.
    func testDiskCacheIsBoundedServesReadsWhileTheGatewayIsAwayAndRefetchesADamagedCopy() throws {
        let ctl = host("a")
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M", files: ["data/base.bin": pseudoRandomBytes(3 << 20, seed: 71)])
        try ctl.run("init", url, "--chunk-size", "64K")
        try ctl.run("server", "add", "web", "--disk", "root=\(disk.path)")
        try ctl.run("backup", "web", "--name", "p")
        let cache = scratch.file("disk-cache")
        let cached = { () throws -> [(size: Int, path: String)] in
            try mustRun(["find", cache, "-type", "f", "-printf", "%s %p\n"]).split(separator: "\n").map { line in
                let parts = line.split(separator: " ", maxSplits: 1)
                return (Int(parts[0])!, String(parts[1]))
            }
        }
        let dropPageCache = { try "3\n".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8) }
        // About 3.5 MB of chunks through a 1M disk cache (and the smallest memory cache).
        do {
            let small = try mount(
                "small", state: "a", options: ["cache_dir=\(cache)", "cache_disk_size=1M", "cache_size=1M"])
            defer { small.unmount() }
            try small.io(timeout: 60) { try mustRun(["cmp", small.path("default/web/p/root.img"), disk.path]) }
            let total = try cached().reduce(0) { $0 + $1.size }
            XCTAssertGreaterThan(total, 0)
            XCTAssertLessThanOrEqual(total, 1 << 20)
        }
        XCTAssertEqual(try mustRun(["stat", "-c", "%a", cache]).trimmingCharacters(in: .whitespacesAndNewlines), "700")

        // Big enough for every chunk: read once, then again with the gateway stopped.
        let mounted = try mount(
            "big", state: "a", options: ["cache_dir=\(cache)", "cache_disk_size=64M", "cache_size=1M"])
        defer { mounted.unmount() }
        let image = mounted.path("default/web/p/root.img")
        try mounted.io(timeout: 60) { try mustRun(["cmp", image, disk.path]) }
        try gateway.pause()
        var paused = true
        defer { if paused { try? gateway.resume() } }
        try dropPageCache()
        try mounted.io(timeout: 60) { try mustRun(["cmp", image, disk.path]) }

        // A copy damaged on the local disk is dropped and fetched again once the store is back.
        let victim = try XCTUnwrap(try cached().max { $0.size < $1.size })
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: victim.path))
        handle.seek(toFileOffset: UInt64(victim.size - 100))
        let byte = handle.readData(ofLength: 1)[0]
        handle.seek(toFileOffset: UInt64(victim.size - 100))
        handle.write(Data([byte ^ 0x40]))
        handle.closeFile()
        try gateway.resume()
        paused = false
        try dropPageCache()
        try mounted.io(timeout: 60) { try mustRun(["cmp", image, disk.path]) }
        XCTAssertTrue(try ctl.run("verify").contains("all intact"))
    }

    func testAHookCommandWrittenIntoTheBucketNeverRuns() throws {
        let a = host("a", environment: ["VAULT_CONFIG_DIR": scratch.file("etc-a")])
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M", files: ["w.bin": pseudoRandomBytes(1 << 20, seed: 31)])
        try a.run("init", url, "--chunk-size", "64K")
        try a.run("server", "add", "web", "--disk", "root=\(disk.path)")
        // Another writer of the bucket puts a command into web's manifest, as an older
        // vaultfs wrote hooks, and adds a server of its own the same way.
        let pwned = scratch.file("PWNED")
        let store = try S3Store(try S3Location(url: url, environment: gateway.environment))
        var object = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(XCTUnwrap(store.get("manifests/servers/web.json", limit: 1 << 20))))
                as? [String: Any])
        var server = try XCTUnwrap(object["server"] as? [String: Any])
        server["hooks"] = nil
        server["freezeCommand"] = "id > \(pwned)"
        object["server"] = server
        try store.put(
            "manifests/servers/web.json", Array(try JSONSerialization.data(withJSONObject: object)), durable: true)
        server["name"] = "planted"
        object["server"] = server
        try store.put(
            "manifests/servers/planted.json", Array(try JSONSerialization.data(withJSONObject: object)), durable: true)

        // Host a takes the new server in; a fresh host b takes in both. Neither reads a disk
        // nor runs anything: a host backs up only the servers set up on it.
        let b = host("b", environment: ["VAULT_CONFIG_DIR": scratch.file("etc-b")])
        for (ctl, server) in [(a, "planted"), (b, "planted"), (b, "web")] {
            let refused = try ctl.attempt(["backup", server, "--name", "hooked"])
            XCTAssertNotEqual(refused.status, 0, server)
            XCTAssertTrue(refused.stderr.contains("not set up on this host"), refused.stderr)
        }
        // b takes web on, reading the disk the bucket names; the hooks the bucket says web has
        // are b's to give, and until then its backups are refused.
        XCTAssertTrue(try b.run("server", "adopt", "web").contains("root=\(disk.path)"))
        let hooked = try b.attempt(["backup", "web", "--name", "hooked"])
        XCTAssertNotEqual(hooked.status, 0)
        XCTAssertTrue(hooked.stderr.contains("this host has none"), hooked.stderr)
        XCTAssertEqual(try a.attempt(["backup", "web", "--name", "plain"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: pwned))
        // The hooks host b sets are its own, and run.
        let log = scratch.file("b-hooks.log")
        try b.run("server", "hooks", "web", "--freeze-command", "echo b >> \(log)")
        try b.run("backup", "web", "--name", "from-b")
        XCTAssertEqual(try String(contentsOfFile: log, encoding: .utf8), "b\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: pwned))
    }

    func testTwoHostsShareOneBucketSeeEachOthersPointsAndNeverBackUpOneServerTwice() throws {
        let a = host("a")
        let b = host("b")
        let webDisk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M", files: ["w.bin": pseudoRandomBytes(2 << 20, seed: 21)])
        let dbDisk = try Ext4Image.make(
            at: scratch.file("db.img"), size: "24M", files: ["d.bin": pseudoRandomBytes(2 << 20, seed: 22)])
        try a.run("init", url, "--chunk-size", "64K")
        try a.run("vault", "create", "prod")
        try a.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(webDisk.path)")
        // Host b sees what host a made, and adds a server of its own that a then sees.
        XCTAssertTrue(try b.run("server", "list").contains("web"))
        // b's freeze hook holds its backup of db open until the test lets it go (60 s at most).
        let gate = scratch.file("gate")
        try b.run(
            "server", "add", "db", "--vault", "prod", "--disk", "root=\(dbDisk.path)", "--freeze-command",
            "i=0; while [ ! -e \(gate) ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done")
        XCTAssertTrue(try a.run("server", "list").contains("db"))

        // Both hosts back up at once, each its own server.
        let fromB = try b.start(["backup", "db", "--name", "from-b"])
        defer { if fromB.isRunning { kill(fromB.processIdentifier, SIGKILL) } }
        try a.run("backup", "web", "--name", "from-a")
        // Garbage collection on a does not run while b's backup may be storing or reusing chunks.
        try a.run("delete", "web/from-a")
        let refused = try JSONSerialization.jsonObject(with: Data(try a.run("gc", "--json").utf8)) as? [String: Any]
        XCTAssertEqual(refused?["ran"] as? Bool, false)
        try a.run("undelete", "web/from-a")
        // The same server from both: refused for one, naming where it runs.
        XCTAssertTrue(
            try eventually(timeout: 20) { try b.json("points").contains { $0["status"] as? String == "Creating" } })
        let twice = try a.attempt(["backup", "db", "--name", "twice"])
        XCTAssertNotEqual(twice.status, 0)
        XCTAssertTrue(twice.stderr.contains("busy") && twice.stderr.contains("running on"), twice.stderr)
        XCTAssertTrue(FileManager.default.createFile(atPath: gate, contents: nil))
        XCTAssertTrue(eventually(timeout: 60) { !fromB.isRunning })
        XCTAssertEqual(fromB.terminationStatus, 0)
        // Each lists the other's point; once b is done, a may back up db.
        XCTAssertEqual(Set(try a.json("points").map { $0["name"] as! String }), ["from-a", "from-b"])
        XCTAssertEqual(Set(try b.json("points").map { $0["name"] as! String }), ["from-a", "from-b"])
        try a.run("backup", "db", "--name", "after-b")
        XCTAssertTrue(
            try b.json("points").contains { $0["name"] as? String == "after-b" && $0["status"] as? String == "Active" })

        // A mount on b shows a's next point without a remount.
        let mounted = try mount("b", state: "b")
        defer { mounted.unmount() }
        XCTAssertTrue(try mounted.exists("prod/db/after-b/root.img"))
        try a.run("backup", "web", "--name", "later")
        XCTAssertTrue(try eventually(timeout: 60) { try mounted.exists("prod/web/later/root.img") })
        try mounted.io(timeout: 60) { try mustRun(["cmp", mounted.path("prod/web/later/root.img"), webDisk.path]) }
        try mounted.io(timeout: 60) { try mustRun(["cmp", mounted.path("prod/db/from-b/root.img"), dbDisk.path]) }
        XCTAssertTrue(try b.run("verify").contains("all intact"))
        // With no backup anywhere, collection runs, and everything still reads.
        let collected = try JSONSerialization.jsonObject(with: Data(try a.run("gc", "--json").utf8)) as? [String: Any]
        XCTAssertEqual(collected?["ran"] as? Bool, true)
        XCTAssertTrue(try a.run("verify").contains("all intact"))
        try b.run("export", "db/from-b", "-o", scratch.file("from-b.img"))
        try mustRun(["cmp", scratch.file("from-b.img"), dbDisk.path])
    }

    /// Collection in two phases, and each host's index of stored chunks: a chunk removed by
    /// one host's collection is stored again by another host that had it in its index.
    func testCollectionRemovesOnlyAfterItsGraceAndOtherHostsStoreRemovedChunksAgain() throws {
        let a = host("a")
        let b = host("b")
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M", files: ["w.bin": pseudoRandomBytes(2 << 20, seed: 61)])
        try a.run("init", url, "--chunk-size", "64K", "--gc-grace", "4s")
        try a.run("server", "add", "web", "--disk", "root=\(disk.path)")
        let gc = { (ctl: Vaultctl) throws -> [String: Any] in
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try ctl.run("gc", "--json").utf8)) as? [String: Any])
        }
        // b backs up, so its index names every chunk of the disk.
        try b.run("backup", "web", "--name", "first")
        try a.run("delete", "web/first")
        try a.run("purge")
        // The purge's collection marked the chunks; they wait out the grace period.
        let waiting = try gc(a)
        XCTAssertEqual(waiting["removedChunks"] as? Int, 0)
        XCTAssertGreaterThan(waiting["markedChunks"] as? Int ?? 0, 0)
        Thread.sleep(forTimeInterval: 4.5)
        let removed = try gc(a)
        XCTAssertEqual(removed["removedChunks"] as? Int, waiting["markedChunks"] as? Int)
        XCTAssertEqual(removed["markedChunks"] as? Int, 0)

        // The same disk again from b: its index must have forgotten the removed chunks.
        try b.run("backup", "web", "--name", "second")
        XCTAssertTrue(try b.run("verify").contains("all intact"))
        try b.run("export", "web/second", "-o", scratch.file("second.img"))
        try mustRun(["cmp", scratch.file("second.img"), disk.path])

        // Marked chunks that a new point uses again lose their mark and stay.
        try a.run("delete", "web/second")
        try a.run("purge")
        try a.run("backup", "web", "--name", "third")
        Thread.sleep(forTimeInterval: 4.5)
        let kept = try gc(a)
        XCTAssertEqual(kept["removedChunks"] as? Int, 0)
        XCTAssertEqual(kept["markedChunks"] as? Int, 0)
        XCTAssertTrue(try b.run("verify").contains("all intact"))
        try b.run("export", "web/third", "-o", scratch.file("third.img"))
        try mustRun(["cmp", scratch.file("third.img"), disk.path])
    }

    func testSyncCopiesEveryPointFromAFolderToS3AndBackIdentical() throws {
        let local = Vaultctl(repository: scratch.file("local"), environment: gateway.environment)
        let disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M", files: ["base.bin": pseudoRandomBytes(1 << 20, seed: 31)])
        try local.run("init", local.repository, "--chunk-size", "64K")
        try local.run(
            "vault", "create", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "4", "--keep-fulls", "2")
        try local.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        let slot = Calendar.current.date(byAdding: .hour, value: 24 + 16, to: Calendar.current.startOfDay(for: Date()))!
        var asItWas: [String: String] = [:]
        for k in 0..<3 {
            try disk.write("change-\(k).bin", pseudoRandomBytes(200_000, seed: UInt64(40 + k)))
            let before = Set(try local.json("points").map { $0["name"] as! String })
            try local.run("schedule", "run", "--once", "--now", isoLocal(slot.addingTimeInterval(Double(k) * 4 * 3600)))
            let name = try XCTUnwrap(
                Set(try local.json("points").map { $0["name"] as! String }).subtracting(before).first)
            asItWas[name] = scratch.file("as-it-was-\(k).img")
            try disk.snapshot(to: asItWas[name]!)
        }
        XCTAssertEqual(Set(try local.json("points").map { $0["type"] as! String }), ["Full", "Incremental"])

        // To S3: a new prefix becomes the folder's mirror; every point exports identical there.
        let sync = ["sync", "--to", url!, "--to-state-dir", scratch.file("state-m"), "--json"]
        let first = try JSONSerialization.jsonObject(with: Data(try local.run(sync).utf8)) as? [String: Any]
        XCTAssertEqual(first?["points"] as? Int, 3)
        XCTAssertGreaterThan(first?["chunks"] as? Int ?? 0, 10)
        let mirror = host("m")
        XCTAssertEqual(
            Set(try mirror.json("points").map { $0["id"] as! String }),
            Set(try local.json("points").map { $0["id"] as! String }))
        for (name, copy) in asItWas {
            try mirror.run("export", "web/\(name)", "-o", scratch.file("m.img"))
            try mustRun(["cmp", scratch.file("m.img"), copy])
        }
        XCTAssertTrue(try mirror.run("verify").contains("all intact"))
        // Again: nothing to copy.
        let again = try JSONSerialization.jsonObject(with: Data(try local.run(sync).utf8)) as? [String: Any]
        XCTAssertEqual(again?["points"] as? Int, 0)
        XCTAssertEqual(again?["pointsPresent"] as? Int, 3)
        XCTAssertEqual(again?["chunks"] as? Int, 0)

        // And back, from S3 into a new folder.
        let back = scratch.file("back")
        try mirror.run(["sync", "--from", url!, "--to", back])
        let restored = Vaultctl(repository: back)
        for (name, copy) in asItWas {
            try restored.run("export", "web/\(name)", "-o", scratch.file("b.img"))
            try mustRun(["cmp", scratch.file("b.img"), copy])
        }
        XCTAssertTrue(try restored.run("verify").contains("all intact"))
        // Another repository is never a target.
        let other = Vaultctl(repository: scratch.file("other"))
        try other.run("init", other.repository)
        let refused = try local.attempt(["sync", "--to", other.repository])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("another repository"), refused.stderr)
    }
}
