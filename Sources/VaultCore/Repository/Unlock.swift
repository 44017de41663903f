import Foundation

/// How a command unlocks an encrypted repository. Unencrypted repositories ignore it, and
/// a passphrase is asked for only when one is needed.
public enum Unlock: Sendable {
    case none
    case passphrase(@Sendable () throws -> String)
    case keyFile(String)

    /// The keys of the repository `config` describes, or nil when it is not encrypted. A
    /// wrong passphrase or key is `.wrongKey`, found before anything is read or written.
    func keys(for config: RepositoryConfig, at root: String) throws -> RepositoryKeys? {
        guard config.isEncrypted else { return nil }
        let keys: RepositoryKeys
        switch self {
        case .none:
            throw VaultError(
                .wrongKey,
                "\(root) is encrypted: give its passphrase (VAULT_PASSPHRASE, VAULT_PASSPHRASE_FILE, --passphrase-fd or at the prompt) or its key file (--key-file)"
            )
        case .passphrase(let ask):
            guard let wrapped = config.key else {
                throw VaultError(
                    .wrongKey, "\(root) keeps its key in a key file, not under a passphrase: give it with --key-file")
            }
            keys = try wrapped.unwrap(passphrase: try ask(), repository: config.id)
        case .keyFile(let path):
            keys = try KeyFile.read(path, repository: config.id)
        }
        guard keys.check(repository: config.id) == config.keyCheck else {
            throw VaultError(.wrongKey, "that key does not open \(root); nothing was read or written")
        }
        return keys
    }
}
