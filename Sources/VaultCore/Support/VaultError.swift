/// An error a user can act on: what kind of failure, one line saying what happened, and the
/// underlying cause when there is one.
public struct VaultError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case invalidArgument, notFound, alreadyExists, busy, notARepository, unsupportedFormat
        case corrupt, io, hasDependants, notEmpty, cancelled, noSpace
        /// The repository cannot be written (read-only media, another user's files).
        case readOnly
        case permissionDenied
        /// A server's disk is not there to read.
        case diskMissing
        /// The catalog is missing, damaged or older than the repository: only
        /// `vaultctl repair --rebuild-catalog` may go on.
        case needsRepair
        /// A wrong passphrase, a missing or damaged key file, or no key for an encrypted
        /// repository.
        case wrongKey
        /// A file has no extended attribute of that name.
        case noAttribute
        /// The object store does not answer (no connection, a timeout, errors that did not
        /// pass with retries).
        case unreachable
    }

    public let code: Code
    public let message: String
    public let cause: String?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause.map { "\($0)" }
    }

    public var description: String {
        guard let cause, !cause.isEmpty else { return message }
        return "\(message): \(cause)"
    }

    static func invalid(_ message: String) -> VaultError { VaultError(.invalidArgument, message) }
    static func notFound(_ message: String) -> VaultError { VaultError(.notFound, message) }
}
