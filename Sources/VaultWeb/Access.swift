import Crypto
import Foundation
import Synchronization
import VaultCore

/// Who may use the console: the holder of the token in the token file, by an
/// `Authorization: Bearer` header (the API) or by a session cookie the login form sets (the
/// pages). Each session has a CSRF token its forms post back. Failed logins are limited per
/// client address.
final class Access: Sendable {
    /// SHA-256 of the token: compared in constant time, the token itself not kept.
    private let tokenDigest: [UInt8]
    private let sessions = Mutex<[String: Session]>([:])
    private let failures = Mutex<[String: [Date]]>([:])

    struct Session: Sendable {
        var csrf: String
        var expires: Date
        var started: Date
    }

    static let sessionLifetime: TimeInterval = 12 * 3600
    static let maximumSessions = 1000
    /// Failed logins a client may make in `failureWindow` before it is told to wait.
    static let allowedFailures = 5
    static let failureWindow: TimeInterval = 60
    static let cookieName = "vaultfs_session"

    init(token: String) {
        tokenDigest = Array(SHA256.hash(data: Data(token.utf8)))
    }

    /// Whether `given` is the token.
    func isToken(_ given: String) -> Bool {
        let digest = Array(SHA256.hash(data: Data(given.utf8)))
        return zip(digest, tokenDigest).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// A new session for a client that gave the token: its cookie value and CSRF token.
    func startSession(now: Date = Date()) -> (id: String, csrf: String) {
        let id = Self.randomToken()
        let csrf = Self.randomToken()
        sessions.withLock { sessions in
            sessions = sessions.filter { $0.value.expires > now }
            if sessions.count >= Self.maximumSessions,
                let oldest = sessions.min(by: { $0.value.started < $1.value.started })
            {
                sessions[oldest.key] = nil
            }
            sessions[Self.key(id)] = Session(csrf: csrf, expires: now + Self.sessionLifetime, started: now)
        }
        return (id, csrf)
    }

    /// The session a cookie names, while it lasts.
    func session(_ id: String, now: Date = Date()) -> Session? {
        sessions.withLock { sessions in
            guard let session = sessions[Self.key(id)], session.expires > now else { return nil }
            return session
        }
    }

    func endSession(_ id: String) {
        _ = sessions.withLock { $0.removeValue(forKey: Self.key(id)) }
    }

    /// Seconds `client` must wait before its next login attempt, or nil when it may try now.
    func loginWait(client: String, now: Date = Date()) -> Int? {
        failures.withLock { failures in
            let recent = (failures[client] ?? []).filter { now.timeIntervalSince($0) < Self.failureWindow }
            failures[client] = recent.isEmpty ? nil : recent
            guard recent.count >= Self.allowedFailures, let first = recent.first else { return nil }
            return max(1, Int((Self.failureWindow - now.timeIntervalSince(first)).rounded(.up)))
        }
    }

    func recordFailure(client: String, now: Date = Date()) {
        failures.withLock { failures in
            // Bounded: a flood from many addresses cannot grow the table without end (nor the
            // failures of one address: only the last few count).
            if failures.count >= 10_000 {
                failures = failures.filter { now.timeIntervalSince($0.value.last ?? now) < Self.failureWindow }
                if failures.count >= 10_000 { failures.removeAll() }
            }
            failures[client, default: []].append(now)
            if let count = failures[client]?.count, count > Self.allowedFailures * 2 {
                failures[client]?.removeFirst(count - Self.allowedFailures * 2)
            }
        }
    }

    /// The session table holds digests: a memory dump does not give live cookies.
    private static func key(_ id: String) -> String {
        SHA256.hash(data: Data(id.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// 32 random bytes from the system's generator, as hex.
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }
}

/// The file that holds the console's token: made at first start, owner-only, in this host's
/// state folder; refused when anyone but its owner may read it.
public enum TokenFile {
    /// `$VAULT_WEB_TOKEN_FILE`, else `web/token` in this user's state folder.
    public static func standardPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let given = environment["VAULT_WEB_TOKEN_FILE"], given.hasPrefix("/") { return given }
        return "\(RepositoryLocation.stateBase(environment: environment))/web/token"
    }

    /// The token in `path`, made first when there is none; `created` says whether it was.
    public static func load(_ path: String) throws -> (token: String, created: Bool) {
        let folder = (path as NSString).deletingLastPathComponent
        if !FileManager.default.fileExists(atPath: folder) {
            try FileManager.default.createDirectory(
                atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd >= 0 {
            let token = Access.randomToken()
            defer { close(fd) }
            try Array((token + "\n").utf8).withUnsafeBytes { try Posix.writeAll(fd, $0, path: path) }
            guard fsync(fd) == 0 else { throw VaultError(.io, "cannot write \(path): \(Posix.message(errno))") }
            return (token, true)
        }
        guard errno == EEXIST else {
            throw VaultError(.io, "cannot make the console's token file \(path): \(Posix.message(errno))")
        }
        // Checked and read through one descriptor, never followed through a link.
        let reading = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard reading >= 0 else {
            throw VaultError(
                .permissionDenied, "cannot open the console's token file \(path): \(Posix.message(errno))")
        }
        defer { close(reading) }
        var status = stat()
        guard fstat(reading, &status) == 0 else {
            throw VaultError(.io, "cannot read \(path): \(Posix.message(errno))")
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw VaultError(.invalidArgument, "the console's token file \(path) is not a regular file")
        }
        guard status.st_uid == getuid() else {
            throw VaultError(
                .permissionDenied, "the console's token file \(path) belongs to uid \(status.st_uid), not to this user")
        }
        guard status.st_mode & 0o077 == 0 else {
            throw VaultError(
                .permissionDenied,
                "the console's token file \(path) may be read by others (mode \(String(status.st_mode & 0o777, radix: 8))): chmod 600 \(path)"
            )
        }
        // A folder others may write lets them swap the file: refused too.
        var parent = stat()
        if stat(folder.isEmpty ? "." : folder, &parent) == 0, parent.st_mode & 0o022 != 0,
            parent.st_mode & S_ISVTX == 0
        {
            throw VaultError(
                .permissionDenied,
                "the folder of the console's token file, \(folder), may be written by others: chmod go-w \(folder)")
        }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { read(reading, $0.baseAddress, $0.count) }
        guard count > 0, let text = String(validating: bytes[..<count], as: UTF8.self),
            let token = text.split(whereSeparator: \.isNewline).first.map(String.init), token.count >= 16
        else {
            throw VaultError(
                .invalidArgument, "the console's token file \(path) holds no token of 16 characters or more")
        }
        return (token, false)
    }
}
