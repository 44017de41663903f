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

/// A server as this host backs it up: the disks it reads (each name and path) and its hooks.
public struct HostServer: Sendable, Equatable {
    public struct Disk: Sendable, Hashable {
        public var name: String
        public var path: String
        public init(name: String, path: String) {
            self.name = name
            self.path = path
        }
    }

    public var disks: [Disk]
    public var hooks: Hooks
    /// How this host reaches the Ceph cluster of its `rbd:` disks.
    public var ceph: CephAccess
    /// The dirty bitmap of its NBD disks, and qemu's QMP socket that clears it.
    public var bitmap: DirtyBitmap?
    /// The id of the repository this host backs the server up into: a file names one, so a
    /// server of the same name in another repository (whoever may write that one) never
    /// gets this host's disks or hooks.
    public var repository: String?
    /// Where this host finds that repository (`RepositoryLocation.hostName`). The id alone is
    /// not enough: it is read from the repository, and whoever may write another repository
    /// can copy it there; where a repository is, is this host's own.
    public var location: String?

    public init(
        disks: [Disk], hooks: Hooks = Hooks(), ceph: CephAccess = CephAccess(), bitmap: DirtyBitmap? = nil,
        repository: String? = nil, location: String? = nil
    ) {
        self.disks = disks
        self.hooks = hooks
        self.ceph = ceph
        self.bitmap = bitmap
        self.repository = repository
        self.location = location
    }
}

/// Where this host keeps the servers it backs up: one file a server,
/// `/etc/vaultfs/servers/SERVER.conf` (`$VAULT_CONFIG_DIR/servers` when that is set), with
/// the repository it is backed up into (`repository = ID` and `location = PATH-OR-URL`), its
/// disks (`disk NAME = PATH`)
/// and hooks (`freeze = COMMAND`, `thaw = COMMAND`).
///
/// What vaultctl reads and runs as root is host configuration, never repository data. A
/// repository may be written by someone else (another host of a shared bucket, an NFS
/// export, a removable disk): a command read from it would run as root here, and a disk path
/// read from it would copy any file of this host into a repository they can read. So the
/// repository says which disks a server has and that it has hooks; a backup reads a disk only
/// when this host's file names the same disk at the same path, and runs only this host's
/// hooks. As sudoers and cron do, a file or folder that another user owns or may write is
/// refused rather than read.
public struct HostServers: Sendable {
    /// The folder of the servers' files.
    public let directory: String
    /// Most bytes a server's file may have.
    static let maxFileSize = 64 << 10

    public init(directory: String) { self.directory = directory }

    /// This host's: `$VAULT_CONFIG_DIR/servers`, else `/etc/vaultfs/servers`.
    public static var standard: HostServers {
        let base = ProcessInfo.processInfo.environment["VAULT_CONFIG_DIR"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        return HostServers(directory: "\(base ?? "/etc/vaultfs")/servers")
    }

    /// The file that holds `server`'s disks and hooks.
    public func path(server: String) -> String { "\(directory)/\(server).conf" }

    /// Whether this host has set up any server since disks became host configuration: without
    /// the folder, a host that ran an older vaultctl backs nothing up until it adopts its
    /// servers, and says so.
    public var isInUse: Bool { Posix.exists(directory) }

    /// `server`'s hooks on this host, or nil when it has none.
    public func hooks(server: String) throws -> Hooks? {
        try self.server(server).flatMap { $0.hooks.isEmpty ? nil : $0.hooks }
    }

    /// `server` as this host backs it up, or nil when it is not set up here. A file that
    /// someone other than root or this user owns or may write, in such a folder, is refused
    /// with why.
    public func server(_ server: String) throws -> HostServer? {
        try Names.validateVaultOrServer(server, what: "server")
        let file = path(server: server)
        var st = stat()
        guard lstat(directory, &st) == 0 else { return nil }
        try Self.requireTrusted(st, directory, isDirectory: true)
        try requireTrustedParent()
        let fd = Glibc.open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw Posix.error("cannot read the server file", file)
        }
        defer { close(fd) }
        guard fstat(fd, &st) == 0 else { throw Posix.error("cannot read the server file", file) }
        try Self.requireTrusted(st, file, isDirectory: false)
        guard st.st_size <= Self.maxFileSize else {
            throw VaultError(.invalidArgument, "the server file \(file) is larger than \(Self.maxFileSize) bytes")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let count = try bytes.withUnsafeMutableBytes { try Posix.pread(fd, $0.baseAddress!, $0.count, 0, path: file) }
        bytes.removeLast(bytes.count - count)
        return try Self.parse(String(decoding: bytes, as: UTF8.self), file: file)
    }

    /// Keeps `host` as `server`'s on this host (owner-only, written whole or not at all).
    /// Creates the folder (mode 0755) when it is missing.
    public func write(_ host: HostServer, server: String) throws {
        try Names.validateVaultOrServer(server, what: "server")
        try check(host.hooks)
        try host.ceph.check()
        try host.bitmap?.check()
        try Names.validateDisks(host.disks.map { (name: $0.name, path: $0.path) }, server: server)
        for disk in host.disks
        where disk.path.contains(where: \.isNewline) || disk.path != disk.path.trimmingCharacters(in: .whitespaces) {
            throw VaultError.invalid(
                "disk '\(disk.name)': a path with a line break or spaces at either end cannot be kept in host configuration"
            )
        }
        let file = path(server: server)
        let parent = (directory as NSString).deletingLastPathComponent
        if !Posix.exists(parent) { try Posix.makeDirectory(parent, mode: 0o755) }
        try Posix.makeDirectory(directory, mode: 0o755)
        var st = stat()
        guard lstat(directory, &st) == 0 else { throw Posix.error("cannot use the servers folder", directory) }
        try Self.requireTrusted(st, directory, isDirectory: true)
        try requireTrustedParent()
        if let repository = host.repository, repository.isEmpty || repository.contains(where: \.isWhitespace) {
            throw VaultError.invalid("a repository id is one word")
        }
        if let location = host.location,
            location.isEmpty || location.contains(where: \.isNewline) || location.unicodeScalars.contains("\0")
                || location != location.trimmingCharacters(in: .whitespaces)
        {
            throw VaultError.invalid(
                "a repository at a path with a line break or spaces at either end cannot be named in host configuration"
            )
        }
        var text =
            "# Server \(server) as this host backs it up: the repository it goes into, the disks vaultctl\n"
            + "# reads, and the commands it runs before (freeze) and after (thaw) reading them.\n"
        if let repository = host.repository { text += "repository = \(repository)\n" }
        if let location = host.location { text += "location = \(location)\n" }
        for disk in host.disks { text += "disk \(disk.name) = \(disk.path)\n" }
        if let freeze = host.hooks.freeze { text += "freeze = \(freeze)\n" }
        if let thaw = host.hooks.thaw { text += "thaw = \(thaw)\n" }
        if let conf = host.ceph.conf { text += "ceph-conf = \(conf)\n" }
        if let id = host.ceph.id { text += "ceph-id = \(id)\n" }
        if let bitmap = host.bitmap { text += "bitmap = \(bitmap.name)\nqmp = \(bitmap.qmp)\n" }
        try Posix.writeFileAtomically(file, Array(text.utf8), mode: 0o600, sync: true)
    }

    /// Refuses hooks a hooks file cannot hold: a command is one line, without NUL.
    public func check(_ hooks: Hooks) throws {
        for command in [hooks.freeze, hooks.thaw].compactMap({ $0 })
        where command.contains(where: \.isNewline) || command.unicodeScalars.contains("\0") {
            throw VaultError.invalid("a hook command is one line: put longer ones in a script and give its path")
        }
    }

    /// Reads a server's file: `repository = ID`, `disk NAME = PATH`, `freeze = COMMAND` and
    /// `thaw = COMMAND` lines; `#` starts a comment.
    static func parse(_ text: String, file: String) throws -> HostServer {
        var values: [String: String] = [:]
        var disks: [HostServer.Disk] = []
        // Lines end at LF, CR LF or CR: a file saved on another system never runs its next
        // line as part of a command.
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw VaultError(
                    .invalidArgument,
                    "\(file) line \(number + 1): expected 'repository = ID', 'location = PATH', 'disk NAME = PATH', 'freeze = COMMAND' or 'thaw = COMMAND'"
                )
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if key.hasPrefix("disk ") || key.hasPrefix("disk\t") {
                let name = key.dropFirst(4).trimmingCharacters(in: .whitespaces)
                guard (try? Names.validateDisk(name)) != nil,
                    value.hasPrefix("/") || (try? RbdSpec(source: value)) != nil || (try? NbdSpec(source: value)) != nil
                else {
                    throw VaultError(
                        .invalidArgument,
                        "\(file) line \(number + 1): expected 'disk NAME = /PATH', 'disk NAME = rbd:POOL/IMAGE' or 'disk NAME = nbd+unix:///EXPORT?socket=PATH'"
                    )
                }
                guard !disks.contains(where: { $0.name == name }) else {
                    throw VaultError(.invalidArgument, "\(file) line \(number + 1): disk '\(name)' is given twice")
                }
                disks.append(HostServer.Disk(name: name, path: value))
                continue
            }
            guard ["freeze", "thaw", "repository", "location", "ceph-conf", "ceph-id", "bitmap", "qmp"].contains(key)
            else {
                throw VaultError(
                    .invalidArgument,
                    "\(file) line \(number + 1): unknown key '\(key)' (known: repository, location, disk NAME, freeze, thaw, ceph-conf, ceph-id, bitmap, qmp)"
                )
            }
            guard values[key] == nil else {
                throw VaultError(.invalidArgument, "\(file) line \(number + 1): '\(key)' is given twice")
            }
            values[key] = value
        }
        let ceph = CephAccess(conf: values["ceph-conf"], id: values["ceph-id"])
        guard (values["bitmap"] == nil) == (values["qmp"] == nil) else {
            throw VaultError(.invalidArgument, "\(file): 'bitmap' and 'qmp' go together")
        }
        let bitmap = values["bitmap"].map { DirtyBitmap(name: $0, qmp: values["qmp"] ?? "") }
        do {
            try ceph.check()
            try bitmap?.check()
        } catch let error as VaultError {
            throw VaultError(.invalidArgument, "\(file): \(error.message)")
        }
        return HostServer(
            disks: disks, hooks: Hooks(freeze: values["freeze"], thaw: values["thaw"]), ceph: ceph, bitmap: bitmap,
            repository: values["repository"],
            location: values["location"])
    }

    /// The folders above the servers folder must be as safe as it is, up to `/`: whoever may
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
        guard let target = Posix.realPath(parent) else {
            throw Posix.error("cannot use the configuration folder", parent)
        }
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
            throw VaultError(
                .permissionDenied,
                "\(path) is not a \(isDirectory ? "folder" : "plain file"); servers are not read from it")
        }
        guard st.st_uid == 0 || st.st_uid == geteuid() else {
            throw VaultError(
                .permissionDenied, "\(path) belongs to user \(st.st_uid), not to root: its servers are not backed up")
        }
        guard st.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            throw VaultError(
                .permissionDenied,
                "\(path) may be written by its group or others (mode \(String(st.st_mode & 0o7777, radix: 8))): its servers are not backed up; make it writable by its owner only"
            )
        }
    }
}
