import Crypto
import Foundation

/// Encryption of what an encrypted repository stores: AES-256-GCM with a fresh random nonce
/// per sealed object, the object's identity bound as associated data, and chunk ids keyed
/// with HMAC-SHA256. An unencrypted repository has no sealer and names chunks by SHA-256.
struct Sealer: Sendable {
    let keys: RepositoryKeys
    /// Nonce and tag: what sealing adds to each object.
    static let overhead = 12 + 16
    /// Files that are sealed whole (maps, manifests) start with this.
    static let magic: [UInt8] = Array("VFSE".utf8)

    /// Seals `plain`; the result is nonce, ciphertext and tag.
    func seal(_ plain: UnsafeRawBufferPointer, context: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        seal(plain, context: context, appendingTo: &out)
        return out
    }

    /// Seals `plain` onto the end of `out`: exactly `plain.count + overhead` bytes.
    func seal(_ plain: UnsafeRawBufferPointer, context: [UInt8], appendingTo out: inout [UInt8]) {
        // AES-GCM with a 256-bit key and a random 96-bit nonce cannot fail on valid input.
        out.append(contentsOf: try! AES.GCM.seal(plain, using: keys.encryption, authenticating: context).combined!)
    }

    /// Opens what `seal` made; a wrong key, another context (a chunk renamed, a map moved)
    /// or any flipped bit throws `.corrupt`.
    func open(_ sealed: UnsafeRawBufferPointer, context: [UInt8], what: String) throws -> [UInt8] {
        guard sealed.count >= Self.overhead, let box = try? AES.GCM.SealedBox(combined: Data(sealed)),
            let plain = try? AES.GCM.open(box, using: keys.encryption, authenticating: context)
        else {
            throw VaultError(.corrupt, "\(what) fails its authentication: damaged, moved or sealed with another key")
        }
        return Array(plain)
    }

    /// The id of a chunk with these plain bytes.
    func chunkId(of plain: UnsafeRawBufferPointer) -> ChunkHash {
        ChunkHash(bytes: Array(HMAC<SHA256>.authenticationCode(for: plain, using: keys.identity)))
    }

    /// A whole file sealed: magic, then nonce, ciphertext and tag.
    func sealFile(_ bytes: [UInt8], context: String) -> [UInt8] {
        Self.magic + bytes.withUnsafeBytes { seal($0, context: Array(context.utf8)) }
    }

    /// Opens a sealed file; an unsealed one in an encrypted repository is refused.
    func openFile(_ bytes: [UInt8], context: String, what: String) throws -> [UInt8] {
        guard bytes.count >= 4, Array(bytes[0..<4]) == Self.magic else {
            throw VaultError(.corrupt, "\(what) is not sealed, in an encrypted repository")
        }
        return try bytes.withUnsafeBytes {
            try open(UnsafeRawBufferPointer(rebasing: $0[4...]), context: Array(context.utf8), what: what)
        }
    }
}

extension Optional where Wrapped == Sealer {
    /// The id of a chunk: keyed when the repository is encrypted, else its SHA-256.
    func chunkId(of plain: UnsafeRawBufferPointer) -> ChunkHash {
        switch self {
        case .some(let sealer): return sealer.chunkId(of: plain)
        case .none: return ChunkHash(of: plain)
        }
    }

    func sealFile(_ bytes: [UInt8], context: String) -> [UInt8] {
        self?.sealFile(bytes, context: context) ?? bytes
    }

    func openFile(_ bytes: [UInt8], context: String, what: String) throws -> [UInt8] {
        guard let sealer = self else {
            if bytes.count >= 4 && Array(bytes[0..<4]) == Sealer.magic {
                throw VaultError(.corrupt, "\(what) is sealed, but the repository says it is not encrypted")
            }
            return bytes
        }
        return try sealer.openFile(bytes, context: context, what: what)
    }
}
