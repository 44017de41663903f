import Foundation
import Glibc

/// Where a repository is: a local folder (everything in it), or an S3 bucket holding what
/// restoring needs plus a local state folder holding the catalog (an index rebuilt from the
/// bucket when missing), locks and reader leases.
public enum RepositoryLocation: Sendable, Equatable {
    case directory(String)
    case s3(S3Location, state: String)

    /// Reads `text`, a path or `s3://BUCKET/PREFIX`. For S3, the endpoint, region and state
    /// folder are the ones given, else `$VAULT_S3_ENDPOINT`, `$AWS_REGION` and
    /// `$VAULT_STATE_DIR`, else a folder of this user's (see `defaultState`).
    public static func parse(
        _ text: String, endpoint: String? = nil, region: String? = nil, stateDirectory: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> RepositoryLocation {
        guard S3Location.isURL(text) else { return .directory(Posix.absolutePath(text)) }
        let s3 = try S3Location(url: text, endpoint: endpoint, region: region, environment: environment)
        let state =
            stateDirectory ?? environment["VAULT_STATE_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? defaultState(for: s3, environment: environment)
        return .s3(s3, state: Posix.absolutePath(state))
    }

    /// `/var/lib/vaultfs/s3/HOST/BUCKET/PREFIX` for root; for other users the same below
    /// `$XDG_STATE_HOME/vaultfs` (or `~/.local/state/vaultfs`).
    static func defaultState(for s3: S3Location, environment: [String: String]) -> String {
        let base = stateBase(environment: environment)
        let host = s3.endpoint.split(separator: "/").dropFirst().first.map(String.init) ?? "endpoint"
        let prefix = s3.prefix.isEmpty ? "_" : S3Store.encode(String(s3.prefix.dropLast()), keepSlash: false)
        return "\(base)/s3/\(host)/\(s3.bucket)/\(prefix)"
    }

    /// This user's state folder: `/var/lib/vaultfs` for root, else `$XDG_STATE_HOME/vaultfs`
    /// (or `~/.local/state/vaultfs`).
    public static func stateBase(environment: [String: String]) -> String {
        if getuid() == 0 { return "/var/lib/vaultfs" }
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return "\(state)/vaultfs" }
        return "\(environment["HOME"] ?? NSHomeDirectory())/.local/state/vaultfs"
    }

    /// The local folder: the repository itself, or its state folder.
    public var root: String {
        switch self {
        case .directory(let path): return path
        case .s3(_, let state): return state
        }
    }

    /// Where this host finds it, as a server file names it: the folder's real path (links
    /// resolved), or the endpoint, bucket and prefix. A repository's id is read from the
    /// repository itself; this is not.
    public var hostName: String {
        switch self {
        case .directory(let path): return Posix.realPath(path) ?? path
        case .s3(let s3, _):
            return
                "\(s3.endpoint.hasSuffix("/") ? String(s3.endpoint.dropLast()) : s3.endpoint)/\(s3.bucket)/\(s3.prefix)"
        }
    }

    /// How users name it: the path or the `s3://` URL.
    public var name: String {
        switch self {
        case .directory(let path): return path
        case .s3(let s3, _): return s3.url.hasSuffix("/") ? String(s3.url.dropLast()) : s3.url
        }
    }
}
