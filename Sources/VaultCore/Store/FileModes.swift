import Glibc

/// Who may read what a repository holds. Owner-only by default, whatever the umask; a
/// repository made with `init --group NAME` lets that group read (never write) it.
public struct FileModes: Sendable, Equatable {
    /// Folders; the setgid bit of the shared form makes new files inherit the group.
    let directory: mode_t
    /// Files that are rewritten: maps, manifests, locks, the catalog, `repository.json`.
    let file: mode_t
    /// Chunks, written once and never changed.
    let sealed: mode_t

    static let ownerOnly = FileModes(directory: 0o700, file: 0o600, sealed: 0o400)
    static let groupReadable = FileModes(directory: 0o2750, file: 0o640, sealed: 0o440)

    /// The group id of `name`, or an error a user can act on.
    static func groupId(_ name: String) throws -> gid_t {
        guard let entry = getgrnam(name) else { throw VaultError.invalid("no group named '\(name)'") }
        return entry.pointee.gr_gid
    }
}
