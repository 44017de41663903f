internal import CFuse3
import Foundation
import Glibc
import Synchronization
import VaultCore

/// Mounts a repository and serves it until unmounted or signalled (SIGINT, SIGTERM, SIGHUP).
public enum Mount {
    /// Runs the session on this thread; `ready` is called once the mount is up.
    public static func serve(
        repository: Repository, at mountpoint: String, options: MountOptions, copyOf: String? = nil,
        ready: () -> Void
    ) throws {
        if let vault = options.vault { _ = try repository.catalog.vault(named: vault) }
        try checkMountPoint(mountpoint)
        try refuseOverlap(mountpoint, with: folders(of: repository, options: options))
        try serve(
            FileSystem(repository: repository, options: options, copyOf: copyOf),
            fsname: options.fsname ?? repository.location.name,
            at: mountpoint, options: options, ready: ready)
    }

    /// Mounts every location of `locations`, each a folder at the root showing what a mount
    /// of it alone would (`vaultfs --all-locations`); `copyOf` names, for a mirror, the
    /// location it takes copies from. The chunk cache's budget is shared out among them, at
    /// least 16 MiB each.
    public static func serveLocations(
        _ locations: [(name: String, repository: Repository, copyOf: String?)], at mountpoint: String,
        options: MountOptions, ready: () -> Void
    ) throws {
        guard options.vault == nil else {
            throw VaultError(
                .invalidArgument, "vault=NAME shows one vault of one repository; mount its location alone for it")
        }
        try checkMountPoint(mountpoint)
        for location in locations {
            try refuseOverlap(mountpoint, with: folders(of: location.repository, options: options))
        }
        var shared = options
        shared.cacheSize = max(16 << 20, options.cacheSize / max(1, locations.count))
        let root = try LocationsRoot(
            locations.map {
                ($0.name, FileSystem(repository: $0.repository, options: shared, copyOf: $0.copyOf))
            })
        try serve(root, fsname: options.fsname ?? "vaultfs-locations", at: mountpoint, options: options, ready: ready)
    }

    /// Runs a session answering with `fs` until unmounted or signalled.
    private static func serve(
        _ fs: any MountOperations, fsname: String, at mountpoint: String, options: MountOptions, ready: () -> Void
    ) throws {
        let argv = [
            "vaultfs", "-o", optionString(fsname: fsname, options: options),
        ]
        .map(duplicateCString)
        defer { argv.forEach { free($0) } }
        var pointers: [UnsafeMutablePointer<CChar>?] = argv + [nil]
        var ops = makeOperations()
        let userdata = Unmanaged.passRetained(Served(fs))
        defer { userdata.release() }
        try pointers.withUnsafeMutableBufferPointer { buffer in
            var args = fuse_args(argc: Int32(argv.count), argv: buffer.baseAddress, allocated: 0)
            guard let session = vfs_session_new(&args, &ops, userdata.toOpaque()) else {
                throw VaultError(.io, "cannot start a FUSE session (is /dev/fuse available?)")
            }
            defer { fuse_session_destroy(session) }
            guard fuse_set_signal_handlers(session) == 0 else {
                throw VaultError(.io, "cannot install signal handlers")
            }
            defer { fuse_remove_signal_handlers(session) }
            guard fuse_session_mount(session, mountpoint) == 0 else {
                throw VaultError(.io, "cannot mount at \(mountpoint) (see the message above)")
            }
            defer { fuse_session_unmount(session) }
            tuneReadAhead(mountpoint)
            fs.start()
            ready()
            _ = vfs_session_loop_mt(session, 16)
            fs.shutdown()
        }
    }

    /// The option string handed to libfuse. The repository's path is /proc/mounts' source,
    /// as an fstab line names it, so `mount -a` sees the mount it already made. A value is
    /// escaped as libfuse's option parser reads it, so a comma in a path cannot add an
    /// option; `nosuid,nodev` come last, so nothing before them can turn them off.
    static func optionString(fsname: String, options: MountOptions) -> String {
        var text = "fsname=\(escapedOptionValue(fsname)),subtype=vaultfs,default_permissions,max_read=\(1 << 20)"
        if options.allowOther { text += ",allow_other" }
        if options.readOnly { text += ",ro" }
        return text + ",nosuid,nodev"
    }

    /// `value` as one value of a libfuse option string: a backslash before each comma and
    /// backslash byte (libfuse's `fuse_opt_parse` reads bytes and takes the one after a
    /// backslash as it is). Bytes, not characters: a comma followed by a combining mark is one
    /// Swift `Character` that is not ",", but libfuse still splits at it.
    static func escapedOptionValue(_ value: String) -> String {
        var escaped: [UInt8] = []
        escaped.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            if byte == UInt8(ascii: ",") || byte == UInt8(ascii: "\\") { escaped.append(UInt8(ascii: "\\")) }
            escaped.append(byte)
        }
        return String(decoding: escaped, as: UTF8.self)
    }

    /// Refuses a mount point that is not a folder one can mount on, with what to do about it:
    /// a dead vaultfs mount (its daemon ended) and a folder already mounted are named as such.
    static func checkMountPoint(_ mountpoint: String) throws {
        if let current = mounts(at: mountpoint).last {
            if current.type.hasPrefix("fuse"), isDead(mountpoint) {
                let kind = current.type == "fuse.vaultfs" ? "vaultfs" : current.type
                throw VaultError(
                    .busy,
                    "\(mountpoint) is a dead \(kind) mount (its daemon has ended); clear it with 'fusermount3 -u \(mountpoint)', then mount again"
                )
            }
            throw VaultError(
                .busy,
                "\(mountpoint) is already a mount point (of \(current.source) \(current.type)); unmount it first (fusermount3 -u \(mountpoint))"
            )
        }
        var st = stat()
        guard stat(mountpoint, &st) == 0 else {
            if errno == ENOENT {
                throw VaultError(
                    .notFound, "mount point \(mountpoint) does not exist; make it first (mkdir \(mountpoint))")
            }
            throw Posix.error("cannot use the mount point", mountpoint)
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw VaultError(.invalidArgument, "mount point \(mountpoint) is not a directory")
        }
    }

    /// Whether the FUSE mount at `mountpoint` has lost its daemon: its requests then fail at
    /// once with ENOTCONN. Asked on another thread and waited for at most a second, so a
    /// daemon that hangs cannot hang this one.
    static func isDead(_ mountpoint: String) -> Bool {
        let answer = Mutex<Int32?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var fs = statvfs()
            let result = statvfs(mountpoint, &fs) == 0 ? 0 : errno
            answer.withLock { $0 = result }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 1)
        return answer.withLock { $0 } == ENOTCONN
    }

    /// The local folders the daemon itself reads and writes while it serves: the repository
    /// (or an `s3://` repository's state folder) and the chunk cache.
    static func folders(of repository: Repository, options: MountOptions) -> [(what: String, path: String)] {
        var folders = [(what: "the repository", path: repository.root)]
        if case .s3 = repository.location { folders[0].what = "the repository's state folder" }
        if let cache = options.cacheDirectory { folders.append((what: "the cache folder", path: cache)) }
        return folders
    }

    /// Refuses a mount point that is one of `folders`, inside one or holds one, with symbolic
    /// links resolved: the daemon would then wait on itself for its own files, and every
    /// reader of the mount would hang with it.
    static func refuseOverlap(_ mountpoint: String, with folders: [(what: String, path: String)]) throws {
        let target = resolvedPath(mountpoint)
        for folder in folders {
            let path = resolvedPath(folder.path)
            let relation: String?
            if target.utf8.elementsEqual(path.utf8) {
                relation = "is"
            } else if isInside(target, path) {
                relation = "is inside"
            } else if isInside(path, target) {
                relation = "holds"
            } else {
                relation = nil
            }
            if let relation {
                throw VaultError(
                    .invalidArgument,
                    "mount point \(mountpoint) \(relation) \(folder.what) (\(folder.path)); mount it somewhere else")
            }
        }
    }

    /// Whether `path` is below `folder` (both absolute and resolved). Bytes, as the kernel
    /// compares names: Swift's `==` and `hasPrefix` on `String` take "é" and "e" + U+0301 as
    /// equal and "/" + a combining mark as no "/".
    private static func isInside(_ path: String, _ folder: String) -> Bool {
        let prefix = folder == "/" ? Array("/".utf8) : Array(folder.utf8) + [UInt8(ascii: "/")]
        return path.utf8.count > prefix.count && path.utf8.starts(with: prefix)
    }

    /// The mounts at `mountpoint`, oldest first: the last is the one on top.
    static func mounts(at mountpoint: String) -> [MountTable.Entry] {
        MountTable.current(at: resolvedPath(mountpoint))
    }

    /// The kernel's read-ahead for this mount: four 1 MiB requests in flight, so a
    /// sequential reader keeps both the decoding and the kernel's copy into the page cache
    /// busy on every core. Measured on the 2-core bench machine, a cold `dd` of the corpus
    /// image, fresh daemon each, in turns: 1 MiB 2.29-5.08 s (median 2.6), 2 MiB 2.25-2.47,
    /// 4 MiB 1.97-2.39 (median 2.02), 8 MiB 2.14-2.53, 16 MiB 2.66-3.32.
    static let readAheadKiB = 4096

    /// Raises the kernel's read-ahead for this mount (its bdi) to `readAheadKiB`, when
    /// allowed (root), so sequential readers get large requests in parallel. Best effort:
    /// without it reads still work.
    static func tuneReadAhead(_ mountpoint: String) {
        // This session's mount is the newest at the folder.
        guard let mine = mounts(at: mountpoint).last, mine.type == "fuse.vaultfs",
            let fd = try? Posix.open("/sys/class/bdi/\(mine.device)/read_ahead_kb", O_WRONLY)
        else { return }
        defer { close(fd) }
        try? Array("\(readAheadKiB)".utf8).withUnsafeBytes { try Posix.writeAll(fd, $0, path: "read_ahead_kb") }
    }
}

/// `path` with symbolic links resolved; when the path itself cannot be looked at (a dead
/// mount), its folder resolved and its last part as it is.
func resolvedPath(_ path: String) -> String {
    if let resolved = Posix.realPath(path) { return resolved }
    let absolute = Posix.absolutePath(path) as NSString
    guard let folder = Posix.realPath(absolute.deletingLastPathComponent) else { return path }
    return (folder == "/" ? "" : folder) + "/" + absolute.lastPathComponent
}

/// A malloc'd copy of a string for C argument vectors; free it with `free`.
func duplicateCString(_ text: String) -> UnsafeMutablePointer<CChar>? {
    text.withCString { strdup($0) }
}
