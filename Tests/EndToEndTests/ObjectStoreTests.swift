import Foundation
import Synchronization
import TestSupport
import XCTest

@testable import VaultCore

/// The storage protocol behaves the same on both backends: a folder, and a bucket of a real
/// Ceph RADOS Gateway. Then what only the object store can do wrong: refused credentials, a
/// missing bucket, a gateway that stops answering and comes back.
final class ObjectStoreTests: XCTestCase {
    func directoryStore() -> (DirectoryStore, Scratch) {
        let scratch = Scratch("objects")
        return (DirectoryStore(root: scratch.path, modes: .ownerOnly), scratch)
    }

    func s3Store(prefix: String = "repo", environment extra: [String: String] = [:]) throws -> S3Store {
        let gateway = try CephGateway.shared()
        let environment = gateway.environment.merging(extra) { $1 }
        let store = try S3Store(
            try S3Location(url: "s3://\(gateway.newBucket("objects"))/\(prefix)", environment: environment),
            environment: environment, backoff: [0.1, 0.2])
        try store.createBucket()
        return store
    }

    func testDirectoryBackendKeepsTheProtocol() throws {
        let (store, scratch) = directoryStore()
        XCTAssertFalse(store.isShared)
        try checkProtocol(store)
        _ = scratch
    }

    func testS3BackendKeepsTheProtocol() throws {
        let store = try s3Store()
        XCTAssertTrue(store.isShared)
        try checkProtocol(store)
    }

    /// What every backend must do, the same way.
    func checkProtocol(_ store: any ObjectStore) throws {
        // Prepared prefixes take objects at once, and a store nobody died writing to has no
        // half-written leftovers.
        try store.prepare(prefixes: ["maps", "maps/x"])
        try store.put("maps/x/y", [1, 2, 3], durable: true)
        XCTAssertEqual(try store.get("maps/x/y", limit: 10), [1, 2, 3])
        XCTAssertEqual(store.staleTemporaries(prefix: "maps/", olderThan: 0, now: Date().timeIntervalSince1970), [])
        try store.delete("maps/x/y")
        let bytes = pseudoRandomBytes(300_000, seed: 1)
        XCTAssertFalse(try store.exists("chunks/ab/one"))
        XCTAssertNil(try store.get("chunks/ab/one", limit: 1 << 20))
        XCTAssertNil(try store.open("chunks/ab/one", prefix: 100))
        // Written once: a second put-if-absent changes nothing.
        XCTAssertTrue(try store.putIfAbsent("chunks/ab/one", bytes))
        XCTAssertFalse(try store.putIfAbsent("chunks/ab/one", Array(bytes.reversed())))
        XCTAssertTrue(try store.exists("chunks/ab/one"))
        XCTAssertEqual(try store.get("chunks/ab/one", limit: 1 << 20), bytes)
        // An object larger than its kind may be is refused before it is read.
        XCTAssertThrowsError(try store.get("chunks/ab/one", limit: 1000))
        // Ranged reads: a prefix, then any range.
        let (reader, prefix) = try XCTUnwrap(try store.open("chunks/ab/one", prefix: 4096))
        XCTAssertEqual(reader.size, bytes.count)
        XCTAssertEqual(prefix, Array(bytes[0..<4096]))
        var middle = [UInt8](repeating: 0, count: 70_000)
        try middle.withUnsafeMutableBytes { try reader.read(200_000..<270_000, into: $0) }
        XCTAssertEqual(middle, Array(bytes[200_000..<270_000]))
        reader.close()
        let (small, whole) = try XCTUnwrap(try store.open("chunks/ab/one", prefix: 1 << 20))
        XCTAssertEqual(small.size, bytes.count)
        XCTAssertEqual(whole, bytes)
        small.close()
        // Replaced whole.
        try store.put("manifests/points/x.json", Array("first".utf8), durable: true)
        try store.put("manifests/points/x.json", Array("second".utf8), durable: false)
        try store.flush()
        XCTAssertEqual(try store.get("manifests/points/x.json", limit: 100), Array("second".utf8))
        // Listing by prefix, past one page of a listing (1,000 keys).
        for i in 0..<1_050 { XCTAssertTrue(try store.putIfAbsent("maps/p\(i % 7)/d\(i).map", [UInt8(i & 255)])) }
        let listed = try store.list(prefix: "maps/")
        XCTAssertEqual(listed.count, 1_050)
        XCTAssertEqual(Set(listed.map(\.key)).count, 1_050)
        XCTAssertTrue(listed.allSatisfy { $0.size == 1 })
        XCTAssertEqual(try store.list(prefix: "maps/p3/").count, 150)
        XCTAssertEqual(try store.list(prefix: "chunks/").map(\.key), ["chunks/ab/one"])
        XCTAssertEqual(try store.list(prefix: "nothing/"), [])
        // Removed; removing what is not there is fine.
        try store.delete("chunks/ab/one")
        try store.delete("chunks/ab/one")
        XCTAssertFalse(try store.exists("chunks/ab/one"))
        // Racing writers of one new object: exactly one wins, and its bytes are what is stored.
        let winners = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            if (try? store.putIfAbsent("chunks/cd/raced", [UInt8](repeating: UInt8(i), count: 5000))) == true {
                winners.withLock { $0 += 1 }
            }
        }
        XCTAssertEqual(winners.withLock { $0 }, 1)
        let raced = try XCTUnwrap(try store.get("chunks/cd/raced", limit: 1 << 20))
        XCTAssertEqual(Set(raced).count, 1)
    }

    func testS3RequestRateLimitSpacesRequestsAcrossThreads() throws {
        let store = try s3Store(environment: ["VAULT_S3_MAX_REQUESTS": "20"])
        // 40 requests from 4 threads at 20 a second: the last cannot start before 1.95 s.
        let start = Date()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<10 { _ = try? store.exists("chunks/00/none") }
        }
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 1.9)
        for bad in ["0", "fast", "-3"] {
            XCTAssertThrowsError(try s3Store(environment: ["VAULT_S3_MAX_REQUESTS": bad])) { error in
                XCTAssertTrue("\(error)".contains("VAULT_S3_MAX_REQUESTS"), "\(error)")
            }
        }
    }

    func testS3RefusesBadCredentialsAndAMissingBucketWithOneLine() throws {
        let gateway = try CephGateway.shared()
        var environment = gateway.environment
        environment["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let wrong = try S3Store(
            try S3Location(url: "s3://\(gateway.newBucket("creds"))/r", environment: environment),
            environment: environment, backoff: [])
        XCTAssertThrowsError(try wrong.createBucket()) { error in
            XCTAssertEqual((error as? VaultError)?.code, .permissionDenied, "\(error)")
            XCTAssertTrue("\(error)".contains("AWS_SECRET_ACCESS_KEY"), "\(error)")
            XCTAssertFalse("\(error)".contains("\n"), "\(error)")
        }
        let missing = try S3Store(
            try S3Location(url: "s3://\(gateway.newBucket("none"))/r", environment: gateway.environment),
            environment: gateway.environment, backoff: [])
        XCTAssertThrowsError(try missing.get("repository.json", limit: 100)) { error in
            XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
        }
        // No credentials at all: named, with where they are looked for.
        XCTAssertThrowsError(
            try S3Store(
                try S3Location(url: "s3://abc/r", environment: gateway.environment),
                environment: ["HOME": "/nonexistent"])
        ) { error in
            XCTAssertTrue("\(error)".contains("AWS_ACCESS_KEY_ID"), "\(error)")
        }
    }

    /// A key or secret that could not sign a request as given is refused in one line, before
    /// any request (so no gateway is needed).
    func testS3KeysThatCannotSignAreRefusedBeforeAnyRequest() throws {
        let location = try S3Location(url: "s3://abc/r", environment: ["VAULT_S3_ENDPOINT": "http://127.0.0.1:9"])
        for (key, secret, says) in [
            ("AKIA:X", "secret", "access key"), ("key\u{7}", "secret", "access key"),
            ("key", "sec\u{0}ret", "secret key"), ("key", "sec\nret", "secret key"),
            ("key", "sécret", "secret key"),
        ] {
            XCTAssertThrowsError(
                try S3Store(location, environment: ["AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret])
            ) { error in
                XCTAssertEqual((error as? VaultError)?.code, .invalidArgument, "\(error)")
                XCTAssertTrue("\(error)".contains(says), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"), "\(error)")
            }
        }
    }

    func testUnreachableGatewayFailsInBoundedTimeAndRecovers() throws {
        let gateway = try CephGateway.shared()
        let store = try s3Store()
        XCTAssertTrue(try store.putIfAbsent("chunks/ef/kept", [1, 2, 3]))
        try gateway.pause()
        var resumed = false
        defer { if !resumed { try? gateway.resume() } }
        let start = Date()
        XCTAssertThrowsError(try store.get("chunks/ef/kept", limit: 100)) { error in
            XCTAssertEqual((error as? VaultError)?.code, .unreachable, "\(error)")
            XCTAssertTrue("\(error)".contains(gateway.endpoint), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 15)
        try gateway.resume()
        resumed = true
        XCTAssertEqual(try store.get("chunks/ef/kept", limit: 100), [1, 2, 3])
    }

    /// A lease that could not be renewed before it expired (the gateway was stopped) stays
    /// lost once the store answers again, and another host may take it; one held and renewed
    /// is never taken.
    func testALeaseThatLapsesStaysLostAndAnotherHostTakesIt() throws {
        let gateway = try CephGateway.shared()
        let store = try S3Store(
            try S3Location(url: "s3://\(gateway.newBucket("lease"))/r", environment: gateway.environment),
            environment: gateway.environment, backoff: [])
        try store.createBucket()
        var holder: String?
        let lease = try XCTUnwrap(
            try ObjectLease.acquire(store, name: "servers/web", host: "host-a", lifetime: 3, holder: &holder))
        var other: String?
        XCTAssertNil(try ObjectLease.acquire(store, name: "servers/web", host: "host-b", lifetime: 3, holder: &other))
        XCTAssertNotNil(other)
        sleep(2)
        XCTAssertFalse(lease.isLost, "renewed while the store answers")
        try gateway.pause()
        var paused = true
        defer { if paused { try? gateway.resume() } }
        sleep(4)
        XCTAssertTrue(lease.isLost)
        try gateway.resume()
        paused = false
        sleep(2)
        XCTAssertTrue(lease.isLost, "a lapsed lease must not come back")
        XCTAssertNotNil(
            try ObjectLease.acquire(store, name: "servers/web", host: "host-b", lifetime: 3, holder: &other))
    }
}
