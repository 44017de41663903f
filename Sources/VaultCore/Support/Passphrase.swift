import Foundation
import Glibc

/// Where a passphrase comes from, in this order: `VAULT_PASSPHRASE`, the file
/// `VAULT_PASSPHRASE_FILE` names, a file descriptor (`--passphrase-fd`), a systemd credential
/// named `passphrase` (`LoadCredential=passphrase:FILE`), then a prompt without echo when
/// standard input is a terminal. Never a command-line argument.
public enum Passphrase {
    /// `descriptorOption` is how the caller's command takes a descriptor (vaultctl's
    /// `--passphrase-fd`; vaultfs has none), for the refusal; `forNewRepository` says the
    /// passphrase is wanted for a repository that does not exist yet.
    public static func read(
        fd: Int32? = nil, prompt: String = "Passphrase: ", descriptorOption: String? = "--passphrase-fd",
        forNewRepository: Bool = false
    ) throws -> String {
        let environment = ProcessInfo.processInfo.environment
        if let value = environment["VAULT_PASSPHRASE"], !value.isEmpty { return value }
        if let file = environment["VAULT_PASSPHRASE_FILE"], !file.isEmpty { return try fromFile(file) }
        if let fd { return try fromDescriptor(fd) }
        if let directory = environment["CREDENTIALS_DIRECTORY"], Posix.exists("\(directory)/passphrase") {
            return try fromFile("\(directory)/passphrase")
        }
        if isatty(STDIN_FILENO) == 1, let typed = getpass(prompt) { return String(cString: typed) }
        let ways =
            "set VAULT_PASSPHRASE or VAULT_PASSPHRASE_FILE\(descriptorOption.map { ", give \($0)" } ?? ""), or run on a terminal"
        if forNewRepository {
            throw VaultError(
                .invalidArgument,
                "--encryption needs a passphrase for the new repository: \(ways) (or keep the key in a file with --key-file FILE); nothing was created"
            )
        }
        throw VaultError(.wrongKey, "the repository is encrypted and no passphrase was given: \(ways)")
    }

    /// A passphrase kept in a file: its first line.
    public static func fromFile(_ path: String) throws -> String {
        let bytes: [UInt8]
        do {
            bytes = try Posix.readFile(path, limit: 64 << 10)
        } catch let error as VaultError {
            throw VaultError(.wrongKey, "cannot read the passphrase file: \(error.message)")
        }
        return firstLine(bytes)
    }

    static func fromDescriptor(_ fd: Int32) throws -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 64 << 10 {
            let n = Posix.retrying { Glibc.read(fd, &buffer, buffer.count) }
            if n < 0 {
                throw VaultError(.wrongKey, "cannot read the passphrase from fd \(fd): \(Posix.message(errno))")
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return firstLine(bytes)
    }

    private static func firstLine(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.prefix { $0 != 10 && $0 != 13 }, as: UTF8.self)
    }
}
