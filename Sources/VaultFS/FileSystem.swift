import Foundation
import Glibc
import Logging
import Synchronization
import VaultCore
import VaultFiles

/// The mount's behaviour, in Swift terms: each request handler returns the one `Reply` the
/// bridge sends. Shared state sits behind mutexes; libfuse calls in from many threads.
final class FileSystem: Sendable {
    let repository: Repository
    let options: MountOptions
    /// The location this repository is the mirror of, when it is one.
    let copyOf: String?
    let uid = getuid()
    let gid = getgid()
    let cache: ChunkCache
    let inodes = InodeTable()
    let logger = Logger(label: "vaultfs")
    let trees: TreeCache
    let handles = HandleTable()
    private let images: ImageOpener
    /// Partitions and filesystems of points' disks, looked at once and kept.
    let files: PointFiles
    let volumes = VolumeTable()
    private let generated: GeneratedFiles
    private let jobs = BackupJobs()
    /// The instant restores this mount serves (`.restores/`).
    let liveRestores: LiveRestoreSet
    let restoreFolders = InstantRestores.standard

    /// Kernel cache time for names and attributes that can change (new points, deletions).
    static let shortTimeout = 1.0
    /// Kernel cache time for disk images, which never change.
    static let imageTimeout = 3600.0

    /// `copyOf`: the location this repository is the mirror of, when it is one: its points
    /// say so in point.json, and none is made or deleted here.
    init(repository: Repository, options: MountOptions, copyOf: String? = nil) {
        self.repository = repository
        self.options = options
        self.copyOf = copyOf
        let resident = System.residentBytes()
        let cache = ChunkCache(
            store: repository.chunks, budget: Self.frameBudget(cacheSize: options.cacheSize, resident: resident))
        logger.info(
            "decoded frames keep \(cache.budget >> 20) MiB: cache_size \(options.cacheSize >> 20) MiB, \((resident ?? 0) >> 20) MiB resident at start"
        )
        let images = ImageOpener(repository: repository, cache: cache)
        self.cache = cache
        self.images = images
        // Looking at a disk needs no lease: what it finds is metadata, and files opened
        // inside take their own.
        let files = PointFiles(memory: cache) { point, disk in try images.open(point: point, disk: disk).reader }
        self.files = files
        trees = TreeCache(repository: repository, singleVault: options.vault, files: files, logger: logger)
        generated = GeneratedFiles(repository: repository, files: files, copyOf: copyOf)
        let logger = logger
        liveRestores = LiveRestoreSet(repository: repository, cache: cache, fillRate: options.restoreFillRate) {
            logger.info("\($0)")
        }
    }

    /// Serves the instant restores there are, and those started later; a read-only mount
    /// writes no target and serves none.
    func startRestores() {
        if !options.readOnly { liveRestores.start() }
    }

    /// `cache_size` bounds the whole daemon, not only its frames: what the daemon holds
    /// before it reads anything (the program and its libraries, the catalog), beyond
    /// `residentAllowance`, is taken from the frames' budget, down to half of `cache_size`.
    /// Peak resident memory then stays near `cache_size` plus the allowance and what the
    /// allocator keeps aside.
    static func frameBudget(cacheSize: Int, resident: Int?) -> Int {
        let overhead = max(0, (resident ?? 0) - residentAllowance)
        return max(cacheSize - overhead, cacheSize / 2)
    }

    static let residentAllowance = 16 << 20

    // MARK: Tree

    /// The tree as the catalog has it now (see `TreeCache`).
    func tree() -> Tree { trees.current() }

    private func invalidate() { trees.invalidate() }

    private func content(of node: Node, in tree: Tree) throws -> [UInt8] {
        try generated.content(of: node, in: tree, built: trees.built)
    }

    func resolve(_ inode: UInt64, in tree: Tree) -> Node? {
        guard let node = inodes.node(for: inode) else { return nil }
        if node.isRestore { return resolveRestore(node) }
        if case .inside(let number, _) = node {
            guard let key = volumes.key(for: number), tree.points[key.point]?.status == .active else { return nil }
            return node
        }
        return tree.contains(node) ? node : nil
    }

    private func attributes(of node: Node, in tree: Tree) -> Attributes? {
        let inode = inodes.inode(for: node)
        let time = tree.time(of: node)
        switch node {
        case .server:
            return Attributes(inode: inode, kind: .directory, mode: 0o755, size: 4096, blocks: 8, time: time)
        case .root, .vault, .byId, .point, .files:
            return Attributes(inode: inode, kind: .directory, mode: 0o555, size: 4096, blocks: 8, time: time)
        case .latest, .byIdLink:
            guard let target = tree.links[node] else { return nil }
            return Attributes(
                inode: inode, kind: .symlink, mode: 0o777, size: Int64(target.utf8.count), blocks: 0, time: time)
        case .image(let point, let disk):
            guard let sizes = tree.inventory.disks[point]?.first(where: { $0.disk == disk }) else { return nil }
            return Attributes(
                inode: inode, kind: .file, mode: mode_t(options.imageMode), size: sizes.size,
                blocks: (sizes.dataBytes + 511) / 512, time: time)
        case .policy, .history, .pointJSON:
            guard let bytes = try? content(of: node, in: tree) else { return nil }
            return Attributes(
                inode: inode, kind: .file, mode: 0o444, size: Int64(bytes.count),
                blocks: Int64((bytes.count + 511) / 512), time: time)
        case .partitionImage(let point, let disk, let number):
            guard let span = try? files.contents(point: point, disk: disk).partitions[number] else { return nil }
            return Attributes(
                inode: inode, kind: .file, mode: mode_t(options.imageMode), size: span.size,
                blocks: span.size / 512, time: time)
        case .inside:
            return try? insideAttributes(of: node)
        case .restores, .restoreFolder, .restoreImage, .restoreStatus:
            return restoreAttributes(of: node)
        }
    }

    func timeout(for node: Node) -> Double {
        // A restore's status.json changes size with every look: its size is never kept.
        if case .restoreStatus = node { return 0 }
        return node.isImmutable ? Self.imageTimeout : Self.shortTimeout
    }

    // MARK: Requests

    func lookup(parent: UInt64, name: FileName) -> Reply {
        let tree = tree()
        guard let parentNode = resolve(parent, in: tree) else { return .refused(.notFound) }
        do {
            guard let child = try child(of: parentNode, named: name, in: tree) else { return .refused(.notFound) }
            if case .inside = child { return .entry(try insideAttributes(of: child), timeout: Self.imageTimeout) }
            guard let attributes = attributes(of: child, in: tree) else { return .refused(.notFound) }
            return .entry(attributes, timeout: timeout(for: child))
        } catch {
            logger.error("lookup \(name): \(error)")
            return .failed(error)
        }
    }

    func getattr(_ inode: UInt64) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .refused(.notFound) }
        if case .inside = node {
            do { return .attributes(try insideAttributes(of: node), timeout: Self.imageTimeout) } catch {
                logger.error("stat of a file inside a point: \(error)")
                return .failed(error)
            }
        }
        guard let attributes = attributes(of: node, in: tree) else { return .refused(.notFound) }
        return .attributes(attributes, timeout: timeout(for: node))
    }

    func readlink(_ inode: UInt64) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .refused(.notFound) }
        if case .inside(_, let number) = node {
            do { return .link(try volume(of: node).reader.linkTarget(number)) } catch {
                logger.error("readlink inside a point: \(error)")
                return .failed(error)
            }
        }
        guard let target = tree.links[node] else { return .refused(.invalid) }
        return .link(FileName(target))
    }

    func opendir(_ inode: UInt64) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .refused(.notFound) }
        do {
            let kind = try node.kind ?? insideAttributes(of: node).kind
            guard kind == .directory else { return .refused(.notADirectory) }
            var entries = [
                DirectoryEntry(name: FileName("."), inode: inode, kind: .directory),
                DirectoryEntry(name: FileName(".."), inode: InodeTable.rootInode, kind: .directory),
            ]
            for (name, child, kind) in try children(of: node, in: tree) {
                entries.append(DirectoryEntry(name: name, inode: inodes.inode(for: child), kind: kind))
            }
            // An open folder's entries count against the memory budget until it is closed.
            cache.charge(Self.memoryCost(of: entries))
            // What never changes is listed once: the kernel keeps the listing.
            return .opened(
                handle: handles.store(.directory(entries)), keepCache: node.isImmutable, directIO: false,
                cacheDirectory: node.isImmutable)
        } catch {
            logger.error("cannot list a folder inside a point: \(error)")
            return .failed(error)
        }
    }

    func readdir(handle: UInt64, offset: Int, size: Int) -> Reply {
        guard case .directory(let entries)? = handles.lookup(handle) else { return .refused(.badHandle) }
        return .directory(entries, offset: offset, maxSize: size)
    }

    /// readdir with each entry's attributes, so `ls -l` needs no lookup per name.
    func readdirplus(handle: UInt64, offset: Int, size: Int) -> Reply {
        guard case .directory(let entries)? = handles.lookup(handle) else { return .refused(.badHandle) }
        let tree = tree()
        return .directoryPlus(entries, offset: offset, maxSize: size) { [self] entry in
            guard let node = inodes.node(for: entry.inode) else { return nil }
            if case .inside = node { return (try? insideAttributes(of: node)).map { ($0, Self.imageTimeout) } }
            return attributes(of: node, in: tree).map { ($0, timeout(for: node)) }
        }
    }

    func open(_ inode: UInt64, flags: Int32) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .refused(.notFound) }
        if case .restoreImage = node { return openRestore(node) }
        guard flags & O_ACCMODE == O_RDONLY else { return .refused(.readOnly) }
        switch node {
        case .restoreStatus:
            return openRestore(node)
        case .image(let point, let disk):
            do {
                let (reader, lease) = try images.open(point: point, disk: disk)
                return .opened(handle: handles.store(.image(reader, lease)), keepCache: true, directIO: false)
            } catch {
                logger.error("cannot open \(disk).img of point \(point): \(error)")
                return .failed(error)
            }
        case .partitionImage(let point, let disk, let number):
            do {
                guard let span = try files.contents(point: point, disk: disk).partitions[number] else {
                    return .refused(.notFound)
                }
                let (reader, lease) = try images.open(point: point, disk: disk)
                let slice = SliceSource(reader, offset: span.offset, length: span.size)
                return .opened(
                    handle: handles.store(.partition(slice, reader: reader, lease: lease)), keepCache: true,
                    directIO: false)
            } catch {
                logger.error("cannot open \(disk).part\(number).img of point \(point): \(error)")
                return .failed(error)
            }
        case .inside(let number, let inode):
            do {
                let attributes = try volume(of: node).reader.attributes(inode)
                // Devices, FIFOs and sockets are shown, never opened.
                guard attributes.kind == .file else {
                    return .refused(attributes.kind == .directory ? .isADirectory : .notOpenable)
                }
                guard let key = volumes.key(for: number) else { return .refused(.notFound) }
                let lease = try images.open(point: key.point, disk: key.disk).lease
                let handle = Handle.inside(try volume(of: node).reader.open(inode), lease: lease)
                return .opened(handle: handles.store(handle), keepCache: true, directIO: false)
            } catch {
                logger.error("cannot open a file inside a point: \(error)")
                return .failed(error)
            }
        case .policy, .history, .pointJSON:
            do {
                return .opened(
                    handle: handles.store(.bytes(try content(of: node, in: tree))), keepCache: false, directIO: true)
            } catch {
                return .failed(error)
            }
        default:
            return .refused(.isADirectory)
        }
    }

    func read(handle: UInt64, offset: Int64, size: Int) -> Reply {
        switch handles.lookup(handle) {
        case .image(let reader, _)?:
            return readPieces(at: offset) { try reader.pieces(at: offset, count: size) }
        case .partition(let slice, let reader, _)?:
            guard offset >= 0, offset < slice.size else { return .data([]) }
            return readPieces(at: offset) {
                try reader.pieces(at: slice.offset + offset, count: min(size, Int(slice.size - offset)))
            }
        case .inside(let file, _)?:
            return readBytes(size: min(size, Int(max(0, file.size - offset))), at: offset) {
                try file.read(at: offset, into: $0)
            }
        case .restore(let restore, _)?:
            do { return .data(try restore.read(at: offset, count: size)) } catch {
                logger.error("restore \(restore.record.id): read at offset \(offset): \(error)")
                return .refused(.io)
            }
        case .bytes(let bytes)?:
            guard offset < bytes.count else { return .data([]) }
            return .data(Array(bytes[Int(offset)..<min(bytes.count, Int(offset) + size)]))
        default:
            return .refused(.badHandle)
        }
    }

    /// A read's reply made of the cache's own frames; a failure is logged and answered with EIO.
    private func readPieces(at offset: Int64, _ body: () throws -> [ImagePiece]) -> Reply {
        do {
            let pieces = try body()
            return pieces.isEmpty ? .data([]) : .pieces(pieces)
        } catch {
            logger.error("read error at offset \(offset): \(error)")
            return .refused(.io)
        }
    }

    /// A read's reply of up to `size` bytes that `body` writes (every byte it counts, zeros
    /// included, so no zero-fill first). A failure is logged and answered with EIO.
    private func readBytes(size: Int, at offset: Int64, _ body: (UnsafeMutableRawBufferPointer) throws -> Int) -> Reply
    {
        guard size > 0 else { return .data([]) }
        do {
            return .data(
                try [UInt8](unsafeUninitializedCapacity: size) { raw, count in
                    count = try body(UnsafeMutableRawBufferPointer(raw))
                })
        } catch {
            logger.error("read error at offset \(offset): \(error)")
            return .refused(.io)
        }
    }

    func lseek(handle: UInt64, offset: Int64, whence: Int32) -> Reply {
        let found = handles.lookup(handle)
        if case .restore(let restore, _)? = found {
            // Every byte of the image is data: a disk being restored has no holes to skip.
            guard offset >= 0, offset < restore.size else { return .refused(.pastEnd) }
            switch whence {
            case 3: return .offset(offset)
            case 4: return .offset(restore.size)
            default: return .refused(.invalid)
            }
        }
        if case .inside(let file, _)? = found, whence == 3 || whence == 4 {
            do {
                guard let position = try file.seek(from: offset, data: whence == 3) else { return .refused(.pastEnd) }
                return .offset(position)
            } catch {
                logger.error("seek inside a point: \(error)")
                return .failed(error)
            }
        }
        if case .partition(let slice, let reader, _)? = found {
            let image = reader.image
            let base = slice.offset
            let end = slice.offset + slice.size
            switch whence {
            case 3:
                guard offset >= 0, offset < slice.size, let data = image.nextData(from: base + offset), data < end
                else { return .refused(.pastEnd) }
                return .offset(data - base)
            case 4:
                guard offset >= 0, offset < slice.size else { return .refused(.pastEnd) }
                return .offset(min(end, image.nextHole(from: base + offset)) - base)
            default:
                return .refused(.invalid)
            }
        }
        guard case .image(let reader, _)? = found else { return .refused(.invalid) }
        let image = reader.image
        switch whence {
        case 3: // SEEK_DATA
            guard offset >= 0, let data = image.nextData(from: offset) else { return .refused(.pastEnd) }
            return .offset(data)
        case 4: // SEEK_HOLE
            guard offset >= 0, offset < image.size else { return .refused(.pastEnd) }
            return .offset(image.nextHole(from: offset))
        default:
            return .refused(.invalid)
        }
    }

    func release(handle: UInt64) -> Reply {
        if case .directory(let entries)? = handles.remove(handle) {
            cache.charge(-Self.memoryCost(of: entries))
        }
        return .done
    }

    /// An estimate of what an open folder's entries take: each entry with its name.
    static func memoryCost(of entries: [DirectoryEntry]) -> Int {
        entries.reduce(0) { $0 + 64 + $1.name.bytes.count }
    }

    func statfs() -> Reply {
        let space = space()
        return .statfs(blocks: space?.blocks ?? 0, free: 0, files: space?.files ?? 0)
    }

    /// The size of the filesystem the repository is on, in 4 KiB blocks, its files, and which
    /// filesystem it is (its id); nil when it cannot be told (an object store).
    func space() -> (filesystem: UInt, blocks: UInt64, files: UInt64)? {
        var sv = Glibc.statvfs()
        guard statvfs(repository.root, &sv) == 0 else { return nil }
        let scale = UInt64(sv.f_frsize) / 4096
        return (sv.f_fsid, UInt64(sv.f_blocks) * max(scale, 1), UInt64(sv.f_files))
    }

    // MARK: Backup now and delete

    /// `mkdir <vault>/<server>/<name>`: registers a manual full point and runs the backup in
    /// the background; the directory exists as soon as this returns.
    func mkdir(parent: UInt64, name: String) -> Reply {
        let tree = tree()
        guard let parentNode = resolve(parent, in: tree) else { return .refused(.notFound) }
        guard case .server(let vault, let server) = parentNode else { return .refused(.notPermitted) }
        do { try Names.validatePointName(name) } catch { return .refused(.invalid) }
        guard let record = tree.inventory.servers.first(where: { $0.name == server }) else {
            return .refused(.notFound)
        }
        guard record.vaultId == tree.vaults[vault]?.id else {
            logger.error("mkdir \(vault)/\(server)/\(name): server \(server) now belongs to another vault")
            return .refused(.notPermitted)
        }
        if let reason = repository.readOnlyReason {
            logger.error("mkdir \(vault)/\(server)/\(name): the repository cannot be written: \(reason)")
            return .refused(.readOnly)
        }
        if let copyOf {
            logger.error("mkdir \(vault)/\(server)/\(name): this is the mirror of location \(copyOf); back up there")
            return .refused(.readOnly)
        }
        let plan = BackupPlan.manual(server: server, name: name)
        do {
            let job = try repository.prepareBackup(plan, waitForCollection: false)
            let id = job.point.id
            jobs.start(job) { [self] point in
                if point.status != .active { logger.error("backup \(server)/\(name) failed: \(point.error ?? "")") }
                invalidate()
            }
            invalidate()
            let attributes = Attributes(
                inode: inodes.inode(for: .point(id)), kind: .directory, mode: 0o555,
                size: 4096, blocks: 8, time: job.point.startedAt)
            return .entry(attributes, timeout: Self.shortTimeout)
        } catch {
            // A backup that cannot start is still an attempt: history shows it and why. A
            // name in use or a busy server is a refusal, not an attempt.
            let code = (error as? VaultError)?.code
            logger.error("mkdir \(vault)/\(server)/\(name): \(error)")
            if code != .alreadyExists && code != .busy && code != .invalidArgument {
                _ = try? repository.recordFailedAttempt(plan, server: record, error: "\(error)", now: Date())
                invalidate()
            }
            return .failed(error)
        }
    }

    /// `rmdir` of a point soft-deletes it, with the same rules as `vaultctl delete`.
    func rmdir(parent: UInt64, name: String) -> Reply {
        let tree = tree()
        guard let parentNode = resolve(parent, in: tree),
            let child = try? child(of: parentNode, named: FileName(name), in: tree)
        else {
            return .refused(.notFound)
        }
        // Only a point's folder can go; everything else, files inside points included, stays.
        guard case .point(let id) = child else {
            return .refused(child.kind == .directory || child.kind == nil ? .readOnly : .notADirectory)
        }
        if let copyOf {
            logger.error("rmdir \(name): this is the mirror of location \(copyOf); its copy policy keeps its points")
            return .refused(.readOnly)
        }
        do {
            _ = try repository.softDelete(id)
            invalidate()
            return .done
        } catch {
            logger.error("rmdir \(name): \(error)")
            return .failed(error)
        }
    }

    /// Stops backups started by mkdir when the mount ends; they end as failed, never half-shown.
    func shutdown() {
        jobs.stopAll()
        liveRestores.shutdown()
    }
}
