import Foundation
import TestSupport
import VaultCore
import XCTest

/// An encrypted repository reveals nothing of the disks it holds, refuses wrong keys with
/// one line, and finds tampering.
final class EncryptionTests: XCTestCase {
    static let passphrase = "correct horse battery staple"
    let marker = Array("VAULTFS-SECRET-MARKER-4f1c9e".utf8)
    var scratch: Scratch!
    var ctl: Vaultctl!
    var disk: Ext4Image!

    override func setUpWithError() throws {
        scratch = Scratch("crypt")
        disk = try Ext4Image.make(
            at: scratch.file("d.img"), size: "16M",
            files: [
                "secret.txt": Array(repeating: marker, count: 3000).flatMap { $0 + [10] },
                "random.bin": pseudoRandomBytes(400_000, seed: 12),
            ])
        ctl = Vaultctl(repository: scratch.file("repo"), environment: ["VAULT_PASSPHRASE": Self.passphrase])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K", "--encryption", "aes-256-gcm")
        try ctl.run("vault", "create", "prod")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        try ctl.run("backup", "web", "--name", "one")
    }

    private func files(_ root: String) throws -> [String] {
        try mustRun(["find", root, "-type", "f"]).split(separator: "\n").map(String.init).sorted()
    }

    func testRepositoryHoldsNoPlainDataAndNoPlainChunkNames() throws {
        // The same disk in an unencrypted repository gives the frames to look for.
        let plain = Vaultctl(repository: scratch.file("plain"))
        try plain.run("init", plain.repository, "--chunk-size", "64K")
        try plain.run("server", "add", "web", "--disk", "root=\(disk.path)")
        try plain.run("backup", "web", "--name", "one")
        var needles: [[UInt8]] = [marker]
        for file in try files("\(plain.repository)/chunks") {
            let bytes = try readBytes(file)
            // A plain chunk's first frame starts after its header and 4-byte frame index.
            if bytes.count > 52 + 64 { needles.append(Array(bytes[52..<(52 + 64)])) }
        }
        XCTAssertGreaterThan(needles.count, 5)
        let plainNames = Set(try files("\(plain.repository)/chunks").map { ($0 as NSString).lastPathComponent })
        for file in try files(ctl.repository) {
            let bytes = try readBytes(file)
            for needle in needles {
                XCTAssertFalse(contains(bytes, needle), "\(file) holds plain data")
            }
            XCTAssertFalse(
                plainNames.contains((file as NSString).lastPathComponent), "\(file) is named by the SHA-256 of its data"
            )
        }
        let out = scratch.file("out.img")
        try ctl.run("export", "web/one", "-o", out)
        try mustRun(["cmp", out, disk.path])
        XCTAssertTrue(try ctl.run("info").contains("aes-256-gcm"))
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count, let first = needle.first else { return false }
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == first && Array(haystack[i..<(i + needle.count)]) == needle { return true }
            i += 1
        }
        return false
    }

    func testWrongPassphraseMissingAndTruncatedKeyFilesAreRefusedWithOneLine() throws {
        let before = try mustRun(["find", ctl.repository, "-type", "f", "-printf", "%p %s\n"])
        let wrong = Vaultctl(repository: ctl.repository, environment: ["VAULT_PASSPHRASE": "not it"])
        for command in [["points"], ["backup", "web"], ["verify"], ["gc"]] {
            let result = try wrong.attempt(command)
            XCTAssertNotEqual(result.status, 0)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertTrue(result.stderr.contains("wrong passphrase"), result.stderr)
        }
        let none = try runCommand(
            [productPath("vaultctl"), "points"], environment: ["VAULT_REPO": ctl.repository, "VAULT_PASSPHRASE": ""])
        XCTAssertTrue(none.stderr.contains("no passphrase was given"), none.stderr)
        // The mount names only the ways it takes one (it has no --passphrase-fd).
        let mnt = scratch.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let mount = try runCommand(
            [productPath("vaultfs"), ctl.repository, mnt, "-f"], environment: ["VAULT_PASSPHRASE": ""], timeout: 20)
        XCTAssertNotEqual(mount.status, 0)
        XCTAssertTrue(mount.stderr.contains("set VAULT_PASSPHRASE or VAULT_PASSPHRASE_FILE"), mount.stderr)
        XCTAssertFalse(mount.stderr.contains("--passphrase-fd"), mount.stderr)
        // Every command's help names where a passphrase comes from.
        for command in [["points"], ["backup"], ["init"]] {
            let help = try mustRun([productPath("vaultctl")] + command + ["--help"])
            XCTAssertTrue(help.contains("VAULT_PASSPHRASE") && help.contains("VAULT_PASSPHRASE_FILE"), help)
        }
        // A new encrypted repository without a passphrase says what it needs, and is not made.
        let new = scratch.file("new")
        let refused = try runCommand(
            [productPath("vaultctl"), "init", new, "--encryption", "aes-256-gcm"], environment: ["VAULT_PASSPHRASE": ""]
        )
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("--encryption needs a passphrase for the new repository"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: new))
        // One made with a passphrase reminds to keep a copy of its key.
        let made = try runCommand(
            [productPath("vaultctl"), "init", new, "--encryption", "aes-256-gcm"],
            environment: ["VAULT_PASSPHRASE": "a passphrase"])
        XCTAssertEqual(made.status, 0, made.stderr)
        XCTAssertTrue(made.stderr.contains("key export FILE"), made.stderr)

        // A repository whose key lives in a key file.
        let keyFile = scratch.file("repo.key")
        let kept = Vaultctl(repository: scratch.file("kept"), environment: ["VAULT_KEY_FILE": keyFile])
        try kept.run("init", kept.repository, "--encryption", "aes-256-gcm", "--key-file", keyFile)
        XCTAssertEqual(try mustRun(["stat", "-c", "%a", keyFile]), "600\n")
        try kept.run("server", "add", "web", "--disk", "root=\(disk.path)")
        try kept.run("backup", "web", "--name", "one")
        let missing = try Vaultctl(
            repository: kept.repository, environment: ["VAULT_KEY_FILE": scratch.file("nope.key")]
        ).attempt(["points"])
        XCTAssertTrue(missing.stderr.contains("is missing"), missing.stderr)
        let truncated = scratch.file("short.key")
        let text = try String(contentsOfFile: keyFile, encoding: .utf8)
        try String(text.prefix(text.count / 2)).write(toFile: truncated, atomically: true, encoding: .utf8)
        let cut = try Vaultctl(repository: kept.repository, environment: ["VAULT_KEY_FILE": truncated]).attempt([
            "points"
        ])
        XCTAssertEqual(cut.stderr.split(separator: "\n").count, 1, cut.stderr)
        XCTAssertTrue(cut.stderr.contains("truncated or damaged"), cut.stderr)
        let other = try Vaultctl(repository: ctl.repository, environment: ["VAULT_KEY_FILE": keyFile]).attempt([
            "points"
        ])
        XCTAssertTrue(other.stderr.contains("belongs to repository"), other.stderr)
        XCTAssertEqual(try mustRun(["find", ctl.repository, "-type", "f", "-printf", "%p %s\n"]), before)
    }

    func testRenamedAndFlippedChunksGiveEIOAndVerifyNamesThem() throws {
        let repository = try Repository(path: ctl.repository, unlock: .passphrase { Self.passphrase })
        let point = try repository.catalog.point(matching: "web/one")
        let image = try repository.flatten(point: point.id, disk: "root")
        let used = image.refs.enumerated().compactMap { i, ref -> (Int, ChunkHash)? in
            if case .data(let hash) = ref { return (i, hash) } else { return nil }
        }
        let counts = Dictionary(used.map { ($0.1, 1) }, uniquingKeysWith: +)
        let unique = used.filter { counts[$0.1] == 1 }
        XCTAssertGreaterThan(unique.count, 3)
        let (renamedAt, renamed) = unique[0]
        let (_, donor) = unique[1]
        let (flippedAt, flipped) = unique[2]
        let path = { (hash: ChunkHash) in "\(self.ctl.repository)/chunks/\(hash.hex.prefix(2))/\(hash.hex)" }
        // A chunk file copied over another id: its frames are bound to their own id.
        unlink(path(renamed))
        try mustRun(["cp", path(donor), path(renamed)])
        var bytes = try readBytes(path(flipped))
        bytes[bytes.count - 40] ^= 0x01
        unlink(path(flipped))
        XCTAssertTrue(FileManager.default.createFile(atPath: path(flipped), contents: Data(bytes)))

        let verify = try ctl.attempt(["verify"])
        XCTAssertNotEqual(verify.status, 0)
        XCTAssertTrue(verify.stdout.contains(renamed.hex) && verify.stdout.contains(flipped.hex), verify.stdout)

        setenv("VAULT_PASSPHRASE", Self.passphrase, 1)
        defer { unsetenv("VAULT_PASSPHRASE") }
        let mount = try MountedRepository(repository: ctl.repository, at: scratch.file("mnt"))
        defer { mount.unmount() }
        let file = mount.path("prod/web/one/root.img")
        for position in [renamedAt, flippedAt] {
            let failure = try mount.io { () -> Int32 in
                let fd = open(file, O_RDONLY)
                defer { close(fd) }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = buffer.withUnsafeMutableBytes {
                    pread(fd, $0.baseAddress, 4096, off_t(position * image.chunkSize))
                }
                return n < 0 ? errno : 0
            }
            XCTAssertEqual(failure, EIO, "position \(position)")
        }
        XCTAssertTrue(mount.isRunning)
    }

    func testChangedPassphraseReplacesTheOldOne() throws {
        try mustRun(
            [productPath("vaultctl"), "key", "change-passphrase"],
            environment: [
                "VAULT_REPO": ctl.repository, "VAULT_PASSPHRASE": Self.passphrase, "VAULT_NEW_PASSPHRASE": "a new one",
            ])
        let old = try ctl.attempt(["points"])
        XCTAssertTrue(old.stderr.contains("wrong passphrase"), old.stderr)
        let renewed = Vaultctl(repository: ctl.repository, environment: ["VAULT_PASSPHRASE": "a new one"])
        let out = scratch.file("out.img")
        try renewed.run("export", "web/one", "-o", out)
        try mustRun(["cmp", out, disk.path])
        XCTAssertEqual(try renewed.attempt(["verify"]).status, 0)
        // The exported key opens it without a passphrase.
        let key = scratch.file("paper.key")
        try renewed.run("key", "export", key)
        XCTAssertEqual(
            try Vaultctl(repository: ctl.repository, environment: ["VAULT_KEY_FILE": key]).attempt(["verify"]).status, 0
        )
    }
}
