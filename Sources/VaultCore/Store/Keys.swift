import Crypto
import Foundation
import _CryptoExtras

/// The keys of an encrypted repository, made at random by `init`: one for AES-256-GCM and
/// one for chunk ids (HMAC-SHA256), so dedup works and chunk names reveal nothing.
public struct RepositoryKeys: Sendable {
    let encryption: SymmetricKey
    let identity: SymmetricKey
    /// Both keys, as they are wrapped or written to a key file.
    let material: [UInt8]

    init(material: [UInt8]) throws {
        guard material.count == 64 else {
            throw VaultError(.wrongKey, "the key is truncated or damaged (\(material.count) bytes, not 64)")
        }
        self.material = material
        encryption = SymmetricKey(data: material[0..<32])
        identity = SymmetricKey(data: material[32..<64])
    }

    static func random() -> RepositoryKeys {
        var generator = SystemRandomNumberGenerator()
        return try! RepositoryKeys(material: (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// A value stored in the repository that tells a wrong key from the right one, without
    /// revealing anything about the key.
    func check(repository id: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Array("vaultfs key check \(id)".utf8), using: identity))
            .base64EncodedString()
    }
}

/// The master key in `repository.json`, wrapped by a key derived from a passphrase with scrypt.
public struct WrappedKey: Codable, Equatable, Sendable {
    public var kdf = "scrypt"
    /// scrypt's cost (N), block size (r) and parallelism (p): 2^15, 8, 1 take about 32 MiB
    /// and a tenth of a second, and make each passphrase guess as dear.
    public var rounds = 1 << 15
    public var blockSize = 8
    public var parallelism = 1
    public var salt: String
    /// AES-256-GCM of the master key (nonce, ciphertext, tag), bound to the repository id.
    public var sealed: String

    static func wrap(_ keys: RepositoryKeys, passphrase: String, repository id: String) throws -> WrappedKey {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var wrapped = WrappedKey(salt: Data(salt).base64EncodedString(), sealed: "")
        let box = try AES.GCM.seal(keys.material, using: try wrapped.derive(passphrase), authenticating: Array(id.utf8))
        wrapped.sealed = box.combined!.base64EncodedString()
        return wrapped
    }

    private func derive(_ passphrase: String) throws -> SymmetricKey {
        guard kdf == "scrypt", let salt = Data(base64Encoded: salt), rounds >= 1 << 10, rounds <= 1 << 22,
            rounds & (rounds - 1) == 0, (1...32).contains(blockSize), (1...16).contains(parallelism)
        else {
            throw VaultError(.corrupt, "the wrapped key in repository.json is damaged: bad key derivation settings")
        }
        return try KDF.Scrypt.deriveKey(
            from: Array(passphrase.utf8), salt: salt, outputByteCount: 32, rounds: rounds,
            blockSize: blockSize, parallelism: parallelism)
    }

    /// The keys, or `.wrongKey` when the passphrase is not the one they were wrapped with.
    func unwrap(passphrase: String, repository id: String) throws -> RepositoryKeys {
        guard let combined = Data(base64Encoded: sealed), let box = try? AES.GCM.SealedBox(combined: combined) else {
            throw VaultError(.corrupt, "the wrapped key in repository.json is damaged")
        }
        guard let material = try? AES.GCM.open(box, using: try derive(passphrase), authenticating: Array(id.utf8))
        else {
            throw VaultError(.wrongKey, "wrong passphrase for this repository; nothing was read or written")
        }
        return try RepositoryKeys(material: Array(material))
    }
}

/// A key kept apart from the data (`init --key-file`): the master key itself, for the
/// repository it belongs to. Whoever holds this file can read the repository.
struct KeyFile: Codable {
    var vaultfsKey = 1
    var repository: String
    var key: String?
    /// The same key in hex (read when `key` is left out, as after typing it back from paper), eight groups of sixteen digits, to copy onto paper.
    var paper: [String]?

    static func write(_ keys: RepositoryKeys, repository id: String, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let hex = keys.material.map { String(format: "%02x", $0) }.joined()
        let paper = stride(from: 0, to: hex.count, by: 16).map { String(Array(hex)[$0..<($0 + 16)]) }
        let file = KeyFile(repository: id, key: Data(keys.material).base64EncodedString(), paper: paper)
        let bytes = Array(try encoder.encode(file)) + [10]
        let fd = try Posix.createFile(path, mode: 0o600, what: "cannot create the key file")
        defer { close(fd) }
        try bytes.withUnsafeBytes { try Posix.writeAll(fd, $0, path: path) }
        if fsync(fd) != 0 { throw Posix.error("cannot sync", path) }
    }

    static func read(_ path: String, repository id: String) throws -> RepositoryKeys {
        let bytes: [UInt8]
        do {
            bytes = try Posix.readFile(path, limit: 64 << 10)
        } catch let error as VaultError where error.code == .notFound {
            throw VaultError(.wrongKey, "the key file \(path) is missing")
        }
        guard let file = try? JSONDecoder().decode(KeyFile.self, from: Data(bytes)),
            let material = file.key.flatMap({ Data(base64Encoded: $0) }).map(Array.init) ?? file.paper.flatMap(fromHex)
        else {
            throw VaultError(.wrongKey, "the key file \(path) is truncated or damaged")
        }
        guard file.repository == id else {
            throw VaultError(
                .wrongKey, "the key file \(path) belongs to repository \(file.repository), not this one (\(id))")
        }
        return try RepositoryKeys(material: material)
    }

    private static func fromHex(_ groups: [String]) -> [UInt8]? {
        let digits = Array(groups.joined().filter { !$0.isWhitespace })
        guard digits.count % 2 == 0 else { return nil }
        return try? stride(from: 0, to: digits.count, by: 2).map { i in
            guard let byte = UInt8(String(digits[i...i + 1]), radix: 16) else { throw VaultError.invalid("not hex") }
            return byte
        }
    }
}
