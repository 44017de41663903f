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
    let uid = getuid()
    let gid = getgid()
    let cache: ChunkCache
    let inodes = InodeTable()
    let logger = Logger(label: "vaultfs")
    private let snapshot = Mutex(Snapshot())
    /// How many times the tree was read from the catalog (a figure for tests and debugging).
    let treeReads = Atomic<Int>(0)
    private let handles = Mutex<(next: UInt64, open: [UInt64: Handle])>((1, [:]))
    private let images: ImageOpener
    /// Partitions and filesystems of points' disks, looked at once and kept.
    let files: PointFiles
    let volumes = VolumeTable()
    private let jobs = Mutex<[String: BackupJob]>([:])
    /// history.json of each server, made once per catalog snapshot: `ls -l` asks for its
    /// size with every listing, and the whole history takes a while to encode.
    private let histories = Mutex<(built: Date, files: [Node: [UInt8]])>((.distantPast, [:]))

    /// How old a catalog snapshot may be before the next request reads a new one.
    static let refreshInterval: TimeInterval = 1
    /// Kernel cache time for names and attributes that can change (new points, deletions).
    static let shortTimeout = 1.0
    /// Kernel cache time for disk images, which never change.
    static let imageTimeout = 3600.0

    /// The tree and when it was read from the catalog, and last found current.
    private struct Snapshot {
        var tree: Tree?
        var built = Date.distantPast
        var checked = Date.distantPast
        /// The catalog's `changeCount` read before the tree; nil forces a new read.
        var changeCount: Int64?
        /// Moves with every tree kept and every `invalidate`: a tree read from an older
        /// generation is not kept.
        var generation = 0
    }

    private enum Handle: Sendable {
        /// An open image keeps its lease: the point's data stays until it is released.
        case image(ImageReader, ReaderLease?)
        /// A partition of a disk: the slice's `offset` is where it starts in `reader`'s image.
        case partition(SliceSource, reader: ImageReader, lease: ReaderLease?)
        /// A regular file inside a filesystem, with the lease of the disk it lies on.
        case inside(any OpenFile, lease: ReaderLease?)
        case bytes([UInt8])
        case directory([DirectoryEntry])
    }

    init(repository: Repository, options: MountOptions) {
        self.repository = repository
        self.options = options
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
        files = PointFiles(memory: cache) { point, disk in try images.open(point: point, disk: disk).reader }
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

    /// The current tree. Once it is older than `refreshInterval` the catalog is asked whether
    /// anything changed, and the tree is read again when it did, so changes made by other
    /// processes show without a remount; a server with 10,000 points is not re-read every
    /// second while `ls -l` walks it.
    func tree() -> Tree {
        let now = Date()
        let current = snapshot.withLock { $0 }
        if let tree = current.tree, now.timeIntervalSince(current.checked) < Self.refreshInterval { return tree }
        // Other hosts' new points, from a shared object store, reach the catalog in the background.
        repository.refreshFromStoreInBackground(every: 15)
        // A catalog that cannot tell whether it changed is read again.
        let changeCount: Int64?
        do { changeCount = try repository.catalog.changeCount() } catch {
            logger.warning("cannot tell whether the catalog changed; reading it again: \(error)")
            changeCount = nil
        }
        // A point being made may belong to a process that died: such a tree is re-read,
        // which recovers it.
        if let tree = current.tree, let changeCount, changeCount == current.changeCount,
            !tree.inventory.points.contains(where: { $0.status == .creating })
        {
            snapshot.withLock { if $0.generation == current.generation { $0.checked = now } }
            return tree
        }
        do {
            let inventory = try repository.catalog.inventory()
            treeReads.add(1, ordering: .relaxed)
            // In an object store that takes requests to the store: the background refresh does it.
            if inventory.points.contains(where: { $0.status == .creating }) && !repository.isShared {
                repository.recoverInterrupted()
            }
            let tree = Tree(inventory, singleVault: options.vault, now: now)
            // Kept only when no other tree was kept and no change was announced meanwhile, so
            // a slow read never hides the point a mkdir has just made.
            let kept = snapshot.withLock { state in
                guard state.generation == current.generation else { return false }
                state = Snapshot(
                    tree: tree, built: now, checked: now, changeCount: changeCount, generation: state.generation + 1)
                return true
            }
            if kept { files.keep(points: Set(inventory.points.filter { $0.status == .active }.map(\.id))) }
            return tree
        } catch {
            logger.error("cannot read the catalog: \(error)")
            return current.tree
                ?? Tree(Inventory(vaults: [], servers: [], points: [], disks: [:]), singleVault: options.vault)
        }
    }

    /// Makes the next request read the catalog again, and drops any tree still being read.
    private func invalidate() {
        snapshot.withLock { state in
            state.checked = .distantPast
            state.changeCount = nil
            state.generation += 1
        }
    }

    func resolve(_ inode: UInt64, in tree: Tree) -> Node? {
        guard let node = inodes.node(for: inode) else { return nil }
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
        }
    }

    private func content(of node: Node, in tree: Tree) throws -> [UInt8] {
        switch node {
        case .policy(let vault):
            guard let record = tree.vaults[vault] else { throw VaultError(.notFound, "no vault \(vault)") }
            return JSON.encode(PolicyView(record))
        case .history(let vault, let server):
            let built = snapshot.withLock { $0.built }
            if let cached = histories.withLock({ $0.built == built ? $0.files[node] : nil }) { return cached }
            let bytes = JSON.encode(try repository.history().filter { $0.vault == vault && $0.server == server })
            histories.withLock { state in
                if state.built != built { state = (built, [:]) }
                state.files[node] = bytes
            }
            return bytes
        case .pointJSON(let id):
            guard let point = try repository.catalog.point(id: id) else {
                throw VaultError(.notFound, "no point \(id)")
            }
            var view = try repository.view(of: point)
            if point.status == .active {
                for index in view.disks.indices {
                    view.disks[index].contents = try? files.contents(point: id, disk: view.disks[index].name).view
                }
            }
            return JSON.encode(view)
        default:
            throw VaultError(.invalidArgument, "not a generated file")
        }
    }

    private func timeout(for node: Node) -> Double {
        node.isImmutable ? Self.imageTimeout : Self.shortTimeout
    }

    // MARK: Requests

    func lookup(parent: UInt64, name: FileName) -> Reply {
        let tree = tree()
        guard let parentNode = resolve(parent, in: tree) else { return .error(ENOENT) }
        do {
            guard let child = try child(of: parentNode, named: name, in: tree) else { return .error(ENOENT) }
            if case .inside = child { return .entry(try insideAttributes(of: child), timeout: Self.imageTimeout) }
            guard let attributes = attributes(of: child, in: tree) else { return .error(ENOENT) }
            return .entry(attributes, timeout: timeout(for: child))
        } catch {
            logger.error("lookup \(name): \(error)")
            return .error(errnoOf(error))
        }
    }

    func getattr(_ inode: UInt64) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .error(ENOENT) }
        if case .inside = node {
            do { return .attributes(try insideAttributes(of: node), timeout: Self.imageTimeout) } catch {
                logger.error("stat of a file inside a point: \(error)")
                return .error(errnoOf(error))
            }
        }
        guard let attributes = attributes(of: node, in: tree) else { return .error(ENOENT) }
        return .attributes(attributes, timeout: timeout(for: node))
    }

    func readlink(_ inode: UInt64) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .error(ENOENT) }
        if case .inside(_, let number) = node {
            do { return .link(try volume(of: node).reader.linkTarget(number)) } catch {
                logger.error("readlink inside a point: \(error)")
                return .error(errnoOf(error))
            }
        }
        guard let target = tree.links[node] else { return .error(EINVAL) }
        return .link(FileName(target))
    }

    func opendir(_ inode: UInt64) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .error(ENOENT) }
        do {
            let kind = try node.kind ?? insideAttributes(of: node).kind
            guard kind == .directory else { return .error(ENOTDIR) }
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
                handle: store(.directory(entries)), keepCache: node.isImmutable, directIO: false,
                cacheDirectory: node.isImmutable)
        } catch {
            logger.error("cannot list a folder inside a point: \(error)")
            return .error(errnoOf(error))
        }
    }

    func readdir(handle: UInt64, offset: Int, size: Int) -> Reply {
        guard case .directory(let entries)? = lookupHandle(handle) else { return .error(EBADF) }
        return .directory(entries, offset: offset, maxSize: size)
    }

    /// readdir with each entry's attributes, so `ls -l` needs no lookup per name.
    func readdirplus(handle: UInt64, offset: Int, size: Int) -> Reply {
        guard case .directory(let entries)? = lookupHandle(handle) else { return .error(EBADF) }
        let tree = tree()
        return .directoryPlus(entries, offset: offset, maxSize: size) { [self] entry in
            guard let node = inodes.node(for: entry.inode) else { return nil }
            if case .inside = node { return (try? insideAttributes(of: node)).map { ($0, Self.imageTimeout) } }
            return attributes(of: node, in: tree).map { ($0, timeout(for: node)) }
        }
    }

    func open(_ inode: UInt64, flags: Int32) -> Reply {
        guard flags & O_ACCMODE == O_RDONLY else { return .error(EROFS) }
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .error(ENOENT) }
        switch node {
        case .image(let point, let disk):
            do {
                let (reader, lease) = try images.open(point: point, disk: disk)
                return .opened(handle: store(.image(reader, lease)), keepCache: true, directIO: false)
            } catch {
                logger.error("cannot open \(disk).img of point \(point): \(error)")
                return .error(errnoOf(error))
            }
        case .partitionImage(let point, let disk, let number):
            do {
                guard let span = try files.contents(point: point, disk: disk).partitions[number] else {
                    return .error(ENOENT)
                }
                let (reader, lease) = try images.open(point: point, disk: disk)
                let slice = SliceSource(reader, offset: span.offset, length: span.size)
                return .opened(
                    handle: store(.partition(slice, reader: reader, lease: lease)), keepCache: true, directIO: false)
            } catch {
                logger.error("cannot open \(disk).part\(number).img of point \(point): \(error)")
                return .error(errnoOf(error))
            }
        case .inside(let number, let inode):
            do {
                let attributes = try volume(of: node).reader.attributes(inode)
                // Devices, FIFOs and sockets are shown, never opened.
                guard attributes.kind == .file else { return .error(attributes.kind == .directory ? EISDIR : EACCES) }
                guard let key = volumes.key(for: number) else { return .error(ENOENT) }
                let lease = try images.open(point: key.point, disk: key.disk).lease
                let handle = Handle.inside(try volume(of: node).reader.open(inode), lease: lease)
                return .opened(handle: store(handle), keepCache: true, directIO: false)
            } catch {
                logger.error("cannot open a file inside a point: \(error)")
                return .error(errnoOf(error))
            }
        case .policy, .history, .pointJSON:
            do {
                return .opened(handle: store(.bytes(try content(of: node, in: tree))), keepCache: false, directIO: true)
            } catch {
                return .error(errnoOf(error))
            }
        default:
            return .error(EISDIR)
        }
    }

    func read(handle: UInt64, offset: Int64, size: Int) -> Reply {
        switch lookupHandle(handle) {
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
        case .bytes(let bytes)?:
            guard offset < bytes.count else { return .data([]) }
            return .data(Array(bytes[Int(offset)..<min(bytes.count, Int(offset) + size)]))
        default:
            return .error(EBADF)
        }
    }

    /// A read's reply made of the cache's own frames; a failure is logged and answered with EIO.
    private func readPieces(at offset: Int64, _ body: () throws -> [ImagePiece]) -> Reply {
        do {
            let pieces = try body()
            return pieces.isEmpty ? .data([]) : .pieces(pieces)
        } catch {
            logger.error("read error at offset \(offset): \(error)")
            return .error(EIO)
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
            return .error(EIO)
        }
    }

    func lseek(handle: UInt64, offset: Int64, whence: Int32) -> Reply {
        let found = lookupHandle(handle)
        if case .inside(let file, _)? = found, whence == 3 || whence == 4 {
            do {
                guard let position = try file.seek(from: offset, data: whence == 3) else { return .error(ENXIO) }
                return .offset(position)
            } catch {
                logger.error("seek inside a point: \(error)")
                return .error(errnoOf(error))
            }
        }
        if case .partition(let slice, let reader, _)? = found {
            let image = reader.image
            let base = slice.offset
            let end = slice.offset + slice.size
            switch whence {
            case 3:
                guard offset >= 0, offset < slice.size, let data = image.nextData(from: base + offset), data < end
                else { return .error(ENXIO) }
                return .offset(data - base)
            case 4:
                guard offset >= 0, offset < slice.size else { return .error(ENXIO) }
                return .offset(min(end, image.nextHole(from: base + offset)) - base)
            default:
                return .error(EINVAL)
            }
        }
        guard case .image(let reader, _)? = found else { return .error(EINVAL) }
        let image = reader.image
        switch whence {
        case 3: // SEEK_DATA
            guard offset >= 0, let data = image.nextData(from: offset) else { return .error(ENXIO) }
            return .offset(data)
        case 4: // SEEK_HOLE
            guard offset >= 0, offset < image.size else { return .error(ENXIO) }
            return .offset(image.nextHole(from: offset))
        default:
            return .error(EINVAL)
        }
    }

    func release(handle: UInt64) -> Reply {
        if case .directory(let entries)? = handles.withLock({ $0.open.removeValue(forKey: handle) }) {
            cache.charge(-Self.memoryCost(of: entries))
        }
        return .done
    }

    /// An estimate of what an open folder's entries take: each entry with its name.
    static func memoryCost(of entries: [DirectoryEntry]) -> Int {
        entries.reduce(0) { $0 + 64 + $1.name.bytes.count }
    }

    func statfs() -> Reply {
        var sv = Glibc.statvfs()
        guard statvfs(repository.root, &sv) == 0 else { return .statfs(blocks: 0, free: 0, files: 0) }
        let scale = UInt64(sv.f_frsize) / 4096
        return .statfs(blocks: UInt64(sv.f_blocks) * max(scale, 1), free: 0, files: UInt64(sv.f_files))
    }

    // MARK: Backup now and delete

    /// `mkdir <vault>/<server>/<name>`: registers a manual full point and runs the backup in
    /// the background; the directory exists as soon as this returns.
    func mkdir(parent: UInt64, name: String) -> Reply {
        let tree = tree()
        guard let parentNode = resolve(parent, in: tree) else { return .error(ENOENT) }
        guard case .server(let vault, let server) = parentNode else { return .error(EPERM) }
        do { try Names.validatePointName(name) } catch { return .error(EINVAL) }
        guard let record = tree.inventory.servers.first(where: { $0.name == server }) else { return .error(ENOENT) }
        guard record.vaultId == tree.vaults[vault]?.id else {
            logger.error("mkdir \(vault)/\(server)/\(name): server \(server) now belongs to another vault")
            return .error(EPERM)
        }
        if let reason = repository.readOnlyReason {
            logger.error("mkdir \(vault)/\(server)/\(name): the repository cannot be written: \(reason)")
            return .error(EROFS)
        }
        let plan = BackupPlan.manual(server: server, name: name)
        do {
            let job = try repository.prepareBackup(plan, waitForCollection: false)
            let id = job.point.id
            jobs.withLock { $0[id] = job }
            invalidate()
            Thread.detachNewThread { [self] in
                let point = job.run()
                if point.status != .active { logger.error("backup \(server)/\(name) failed: \(point.error ?? "")") }
                _ = jobs.withLock { $0.removeValue(forKey: id) }
                invalidate()
            }
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
            return .error(errnoOf(error))
        }
    }

    /// `rmdir` of a point soft-deletes it, with the same rules as `vaultctl delete`.
    func rmdir(parent: UInt64, name: String) -> Reply {
        let tree = tree()
        guard let parentNode = resolve(parent, in: tree),
            let child = try? child(of: parentNode, named: FileName(name), in: tree)
        else {
            return .error(ENOENT)
        }
        // Only a point's folder can go; everything else, files inside points included, stays.
        guard case .point(let id) = child else {
            return .error(child.kind == .directory || child.kind == nil ? EROFS : ENOTDIR)
        }
        do {
            _ = try repository.softDelete(id)
            invalidate()
            return .done
        } catch {
            logger.error("rmdir \(name): \(error)")
            return .error(errnoOf(error))
        }
    }

    /// Stops backups started by mkdir when the mount ends; they end as failed, never half-shown.
    func shutdown() {
        let running = jobs.withLock { Array($0.values) }
        running.forEach { $0.cancel() }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, jobs.withLock({ !$0.isEmpty }) { Thread.sleep(forTimeInterval: 0.05) }
    }

    // MARK: Handles and images

    private func store(_ handle: Handle) -> UInt64 {
        handles.withLock { state in
            let number = state.next
            state.next += 1
            state.open[number] = handle
            return number
        }
    }

    private func lookupHandle(_ number: UInt64) -> Handle? { handles.withLock { $0.open[number] } }
}
