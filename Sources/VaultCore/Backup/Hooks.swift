import Foundation
import Glibc

/// A server's freeze and thaw commands, run as the backing-up user (root) before and after
/// its disks are read.
public struct Hooks: Sendable, Equatable {
    public var freeze: String?
    public var thaw: String?

    /// Blank commands are none: a hook that is only spaces is not recorded as a hook.
    public init(freeze: String? = nil, thaw: String? = nil) {
        func command(_ text: String?) -> String? {
            text.map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        self.freeze = command(freeze)
        self.thaw = command(thaw)
    }

    public var isEmpty: Bool { freeze == nil && thaw == nil }
}

/// Where this host keeps its servers' hooks: one file a server,
/// `/etc/vaultfs/hooks/SERVER.conf` (`$VAULT_CONFIG_DIR/hooks` when that is set).
///
/// Hooks are host configuration and never repository data. A repository may be written by
/// someone else (another host of a shared bucket, an NFS export, a removable disk), and a
/// command read from it would run as root here; the repository says only that a server has
/// hooks. As sudoers and cron do, a file or folder that another user owns or may write is
/// refused rather than read.
public struct HookFiles: Sendable {
    /// The hooks folder.
    public let directory: String
    /// Most bytes a hooks file may have.
    static let maxFileSize = 64 << 10

    public init(directory: String) { self.directory = directory }

    /// This host's: `$VAULT_CONFIG_DIR/hooks`, else `/etc/vaultfs/hooks`.
    public static var standard: HookFiles {
        let base = ProcessInfo.processInfo.environment["VAULT_CONFIG_DIR"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        return HookFiles(directory: "\(base ?? "/etc/vaultfs")/hooks")
    }

    /// The file that holds `server`'s hooks.
    public func path(server: String) -> String { "\(directory)/\(server).conf" }

    /// `server`'s hooks on this host, or nil when it has none. A file that someone other than
    /// root or this user owns or may write, in such a folder, is refused with why.
    public func hooks(server: String) throws -> Hooks? {
        try Names.validateVaultOrServer(server, what: "server")
        let file = path(server: server)
        var st = stat()
        guard lstat(directory, &st) == 0 else { return nil }
        try Self.requireTrusted(st, directory, isDirectory: true)
        try requireTrustedParent()
        let fd = Glibc.open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw Posix.error("cannot read the hooks file", file)
        }
        defer { close(fd) }
        guard fstat(fd, &st) == 0 else { throw Posix.error("cannot read the hooks file", file) }
        try Self.requireTrusted(st, file, isDirectory: false)
        guard st.st_size <= Self.maxFileSize else {
            throw VaultError(.invalidArgument, "the hooks file \(file) is larger than \(Self.maxFileSize) bytes")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let count = try bytes.withUnsafeMutableBytes { try Posix.pread(fd, $0.baseAddress!, $0.count, 0, path: file) }
        bytes.removeLast(bytes.count - count)
        return try Self.parse(String(decoding: bytes, as: UTF8.self), file: file)
    }

    /// Keeps `hooks` as `server`'s on this host (owner-only, written whole or not at all);
    /// empty hooks remove its file. Creates the folder (mode 0755) when it is missing.
    public func write(_ hooks: Hooks, server: String) throws {
        try Names.validateVaultOrServer(server, what: "server")
        try check(hooks)
        let file = path(server: server)
        if hooks.isEmpty {
            if unlink(file) != 0 && errno != ENOENT { throw Posix.error("cannot remove the hooks file", file) }
            return
        }
        let parent = (directory as NSString).deletingLastPathComponent
        if !Posix.exists(parent) { try Posix.makeDirectory(parent, mode: 0o755) }
        try Posix.makeDirectory(directory, mode: 0o755)
        var st = stat()
        guard lstat(directory, &st) == 0 else { throw Posix.error("cannot use the hooks folder", directory) }
        try Self.requireTrusted(st, directory, isDirectory: true)
        try requireTrustedParent()
        var text = "# Hooks of server \(server), run by vaultctl before (freeze) and after (thaw) its disks are read.\n"
        if let freeze = hooks.freeze { text += "freeze = \(freeze)\n" }
        if let thaw = hooks.thaw { text += "thaw = \(thaw)\n" }
        try Posix.writeFileAtomically(file, Array(text.utf8), mode: 0o600, sync: true)
    }

    /// Refuses hooks a hooks file cannot hold: a command is one line, without NUL.
    public func check(_ hooks: Hooks) throws {
        for command in [hooks.freeze, hooks.thaw].compactMap({ $0 })
        where command.contains(where: \.isNewline) || command.unicodeScalars.contains("\0") {
            throw VaultError.invalid("a hook command is one line: put longer ones in a script and give its path")
        }
    }

    /// Reads a hooks file: `freeze = COMMAND` and `thaw = COMMAND` lines; `#` starts a comment.
    static func parse(_ text: String, file: String) throws -> Hooks {
        var values: [String: String] = [:]
        // Lines end at LF, CR LF or CR: a file saved on another system never runs its next
        // line as part of a command.
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw VaultError(.invalidArgument, "\(file) line \(number + 1): expected 'freeze = COMMAND' or 'thaw = COMMAND'")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            guard key == "freeze" || key == "thaw" else {
                throw VaultError(.invalidArgument, "\(file) line \(number + 1): unknown key '\(key)' (known: freeze, thaw)")
            }
            guard values[key] == nil else { throw VaultError(.invalidArgument, "\(file) line \(number + 1): '\(key)' is given twice") }
            values[key] = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return Hooks(freeze: values["freeze"], thaw: values["thaw"])
    }

    /// The folders above the hooks folder must be as safe as it is, up to `/`: whoever may
    /// write one may swap what is below it for their own. The configuration folder itself is
    /// not followed through a link; above it, a folder that everyone may write counts only
    /// with its sticky bit (as `/tmp`), where nobody may rename what others own.
    private func requireTrustedParent() throws {
        let parent = (directory as NSString).deletingLastPathComponent
        var st = stat()
        guard lstat(parent, &st) == 0 else { throw Posix.error("cannot use the configuration folder", parent) }
        try Self.requireTrusted(st, parent, isDirectory: true)
        // Above it, each folder on the path as written and on the path its links lead to: a
        // link can be swapped by whoever may write the folder it is in, the next one up.
        guard let resolved = realpath(parent, nil) else { throw Posix.error("cannot use the configuration folder", parent) }
        let target = String(cString: resolved)
        free(resolved)
        for start in [parent, target] {
            var folder = start
            while folder != "/" && !folder.isEmpty {
                folder = (folder as NSString).deletingLastPathComponent
                guard lstat(folder, &st) == 0 else { throw Posix.error("cannot use the configuration folder", folder) }
                let kind = st.st_mode & S_IFMT
                if kind == S_IFLNK { continue }
                if kind == S_IFDIR, st.st_mode & S_ISVTX != 0, st.st_uid == 0 || st.st_uid == geteuid() { continue }
                try Self.requireTrusted(st, folder, isDirectory: true)
            }
        }
    }

    /// Refuses what is not a plain file (or folder), or that another user owns or that its
    /// group or others may write.
    static func requireTrusted(_ st: stat, _ path: String, isDirectory: Bool) throws {
        let kind = st.st_mode & S_IFMT
        guard kind == (isDirectory ? S_IFDIR : S_IFREG) else {
            throw VaultError(.permissionDenied, "\(path) is not a \(isDirectory ? "folder" : "plain file"); hooks are not read from it")
        }
        guard st.st_uid == 0 || st.st_uid == geteuid() else {
            throw VaultError(.permissionDenied, "\(path) belongs to user \(st.st_uid), not to root: its hooks are not run")
        }
        guard st.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            throw VaultError(.permissionDenied, "\(path) may be written by its group or others (mode \(String(st.st_mode & 0o7777, radix: 8))): its hooks are not run; make it writable by its owner only")
        }
    }
}
