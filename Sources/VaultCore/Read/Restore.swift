internal import CSupport
import Dispatch
import Foundation
import Glibc
import Synchronization

/// Where a restore writes in place: a block device, or a regular file (made, sparse, when
/// there is none). Opened, and checked, before anything is read or written.
///
/// - A block device is opened exclusively (O_EXCL): the kernel refuses while it is mounted
///   or held by another exclusive user (a device mapper, an md array, another restore).
/// - A file is refused while a loop device is attached to it, or while another program holds
///   a lock on it (a running qemu locks its images); the restore then holds a write lock on
///   the whole file until it ends, so no qemu starts on a half-written disk.
/// - Anything else (a directory, a pipe, a character device, standard output) is refused: a
///   stream is what `export` writes.
public final class RestoreTarget: Sendable {
    public let fd: Int32
    /// The name the user gave, for messages.
    public let name: String
    public let isDevice: Bool
    /// True when there was no file: it reads as zeros, so nothing of it is compared.
    public let isNew: Bool
    /// Whether `fd` is still open.
    private let open = Mutex(true)

    private init(fd: Int32, name: String, isDevice: Bool, isNew: Bool) {
        self.fd = fd
        self.name = name
        self.isDevice = isDevice
        self.isNew = isNew
    }

    deinit { if open.withLock({ $0 }) { close(fd) } }

    /// Closes a target a restore refused before writing to it, and removes the file when
    /// this restore made it.
    func discard() {
        guard
            open.withLock({ was in
                defer { was = false }
                return was
            })
        else { return }
        close(fd)
        if isNew { unlink(name) }
    }

    /// Opens `path`; with `create`, a file that does not exist is made (else that is refused).
    public static func open(_ path: String, create: Bool = true) throws -> RestoreTarget {
        guard path != "-" else {
            throw VaultError.invalid(
                "a restore writes in place and cannot write to standard output; 'vaultctl export -o -' streams a disk")
        }
        var st = stat()
        guard stat(path, &st) == 0 else {
            guard errno == ENOENT, create else { throw Posix.error("cannot restore to", path) }
            let fd = try Posix.createFile(path, mode: 0o600, what: "cannot create")
            let target = RestoreTarget(fd: fd, name: path, isDevice: false, isNew: true)
            do { try target.lock() } catch {
                target.discard()
                throw error
            }
            return target
        }
        switch st.st_mode & S_IFMT {
        case S_IFBLK:
            let fd = Glibc.open(path, O_RDWR | O_EXCL | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == EBUSY {
                    throw VaultError(
                        .busy,
                        "\(path) is mounted or in use (the kernel refused to open it exclusively): unmount it, or stop what uses it, first; nothing was written"
                    )
                }
                throw Posix.error("cannot open for writing", path)
            }
            // A running qemu does not open its disk exclusively, but it locks it, a device too.
            let target = RestoreTarget(fd: fd, name: path, isDevice: true, isNew: false)
            try target.lock()
            return target
        case S_IFREG:
            if let loop = try loopDevice(backedBy: path) {
                throw VaultError(
                    .busy, "\(path) is attached to \(loop): detach it (losetup -d \(loop)) first; nothing was written")
            }
            let fd = try Posix.open(path, O_RDWR | O_CLOEXEC, what: "cannot open for writing")
            let target = RestoreTarget(fd: fd, name: path, isDevice: false, isNew: false)
            try target.lock()
            return target
        case S_IFDIR:
            throw VaultError.invalid("cannot restore to \(path): it is a directory; give a file or a block device")
        default:
            throw VaultError.invalid(
                "cannot restore to \(path): a restore writes in place to a block device or a regular file; 'vaultctl export' writes a stream"
            )
        }
    }

    /// Takes a write lock on the whole target, held until it is closed: refused while another
    /// program holds any lock on it (a running virtual machine does).
    private func lock() throws {
        let locked = vfs_lock_whole_file(fd)
        guard locked != 0 else { return }
        if locked == -EAGAIN || locked == -EACCES {
            throw VaultError(
                .busy,
                "\(name) is in use: another program holds a lock on it (a running virtual machine does); stop it first; nothing was written"
            )
        }
        throw Posix.error("cannot lock", name, -locked)
    }

    /// The loop device whose backing file is `path`, if any.
    static func loopDevice(backedBy path: String) throws -> String? {
        guard let file = Posix.realPath(path),
            let devices = try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")
        else { return nil }
        for device in devices.sorted() where device.hasPrefix("loop") {
            guard let bytes = Posix.readKernelFile("/sys/block/\(device)/loop/backing_file", limit: 8192)
            else { continue }
            let backing = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .newlines)
            if backing == file || backing == "\(file) (deleted)" { return "/dev/\(device)" }
        }
        return nil
    }

    /// What the target is, beyond its name: a device's number, or a file's device and inode.
    /// A restore that resumes later checks it, so a renamed or replaced file, or a device
    /// that now has another disk's name, is never written by mistake.
    func identity() throws -> (device: UInt64, inode: UInt64) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Posix.error("cannot stat", name) }
        return isDevice ? (UInt64(st.st_rdev), 0) : (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Bytes the target holds now.
    func currentSize() throws -> Int64 {
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else { throw Posix.error("cannot find the size of", name) }
        return Int64(end)
    }

    /// Makes room for `size` bytes: a device must hold them already; a file is set to that
    /// size, so it ends where the disk does.
    func prepare(size: Int64) throws {
        let current = try currentSize()
        if isDevice {
            guard current >= size else {
                throw VaultError.invalid(
                    "\(name) holds \(Units.formatSize(current)) (\(current) bytes), less than the disk's \(Units.formatSize(size)) (\(size) bytes); nothing was written"
                )
            }
        } else if current != size {
            guard ftruncate(fd, off_t(size)) == 0 else { throw Posix.error("cannot size", name) }
        }
    }

    /// Makes `length` bytes at `offset` read as zeros: a hole in a file, a zeroed range on a
    /// device; written zeros where neither can be had.
    func zero(at offset: Int64, length: Int) throws {
        let done =
            isDevice
            ? vfs_zero_range(fd, UInt64(offset), UInt64(length))
            : vfs_punch_hole(fd, offset, Int64(length))
        if done == 0 { return }
        let zeros = [UInt8](repeating: 0, count: length)
        try zeros.withUnsafeBytes { try Posix.pwriteAll(fd, $0, offset, path: name) }
    }

    /// Tells the kernel the target is read in order, so it reads further ahead.
    func adviseSequential() { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) }

    /// Makes every write durable, then lets the target go (and its lock).
    func finish() throws {
        guard
            open.withLock({ was in
                defer { was = false }
                return was
            })
        else { return }
        defer { close(fd) }
        if fsync(fd) != 0 { throw Posix.error("cannot flush", name) }
    }
}

/// What a restore did: each chunk position of the disk was written with the point's data,
/// made zero, or left as the target already held it.
public struct RestoreReport: Sendable {
    public var point: Point
    public var disk: String
    public var target: String
    public var size: Int64
    /// The point the caller said the target held (`--from-point`), when given.
    public var fromPoint: Point?
    public var writtenBytes: Int64 = 0
    public var zeroedBytes: Int64 = 0
    public var unchangedBytes: Int64 = 0
    /// Bytes of the target read to compare it with the point.
    public var comparedBytes: Int64 = 0
    public var writtenChunks = 0
    public var zeroedChunks = 0
    public var unchangedChunks = 0
    public var createdTarget = false
    public var seconds = 0.0

    fileprivate mutating func count(_ outcome: PositionOutcome, length: Int) {
        let bytes = Int64(length)
        switch outcome {
        case .written:
            writtenBytes += bytes
            writtenChunks += 1
        case .zeroed:
            zeroedBytes += bytes
            zeroedChunks += 1
        case .unchanged:
            unchangedBytes += bytes
            unchangedChunks += 1
        }
        if outcome.compared { comparedBytes += bytes }
    }
}

/// What a restore did at one chunk position, and whether it read the target to decide.
private enum PositionOutcome {
    case written(compared: Bool)
    case zeroed(compared: Bool)
    case unchanged(compared: Bool)

    var compared: Bool {
        switch self {
        case .written(let compared), .zeroed(let compared), .unchanged(let compared): return compared
        }
    }
}

extension Repository {
    /// Makes `target` hold `point`'s disk, writing only where it differs.
    ///
    /// Each chunk position is compared: the target's bytes are read and given the id the
    /// repository gives chunks (keyed where it is encrypted), and only a position whose id is
    /// not the point's is written. Where the point is zero the target gets a hole or a zeroed
    /// range, unless it reads as zeros already. A new file is not read at all.
    ///
    /// With `base`, the caller says the target holds that point of the same disk: the two
    /// maps are compared instead, and the target is read only to check that claim at a few
    /// positions both points share (a target that fails the check is refused before anything
    /// is written). A restore cut off part way can be run again, either way, and ends right.
    public func restore(
        point: Point, disk: String, to target: RestoreTarget, base: Point? = nil, cache: ChunkCache? = nil,
        progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }
    ) throws -> RestoreReport {
        let started = Date()
        var leases: [ReaderLease?] = []
        defer { _ = leases }
        var baseImage: FlatImage?
        let image: FlatImage
        var report: RestoreReport
        let reader: ImageReader
        // Everything that can refuse comes before the first write; a file made for this
        // restore then goes again.
        do {
            let opened = try openImage(point: point.id, disk: disk)
            (image, leases) = (opened.image, [opened.lease])
            if let base {
                guard base.serverName == point.serverName else {
                    throw VaultError.invalid(
                        "--from-point \(base.name) is a point of \(base.serverName), not of \(point.serverName)")
                }
                guard try catalog.pointDisks(base.id).contains(where: { $0.disk == disk }) else {
                    throw VaultError.notFound("point \(base.name) has no disk '\(disk)'")
                }
                guard !target.isNew else {
                    throw VaultError.invalid(
                        "--from-point says \(target.name) holds point \(base.name), but there was no such file")
                }
                let opened = try openImage(point: base.id, disk: disk)
                (baseImage, leases) = (opened.image, leases + [opened.lease])
                // Grown, a short file would read as zeros where the two points agree, and
                // those positions are not written.
                let held = try target.currentSize()
                guard target.isDevice ? held >= opened.image.size : held == opened.image.size else {
                    throw VaultError.invalid(
                        "\(target.name) holds \(held) bytes, not the \(opened.image.size) of point \(base.name)'s disk '\(disk)': it does not hold that point; restore without --from-point; nothing was written"
                    )
                }
            }
            reader = ImageReader(
                image: image, cache: cache ?? ChunkCache(store: chunks, budget: 64 << 20), readAhead: 0)
            report = RestoreReport(point: point, disk: disk, target: target.name, size: image.size, fromPoint: base)
            report.createdTarget = target.isNew
            if let baseImage, let base {
                report.comparedBytes = try checkHolds(target, baseImage, reader: reader, base: base)
            }
            try target.prepare(size: image.size)
        } catch {
            target.discard()
            throw error
        }

        let meter = ProgressMeter(label: "restore \(point.serverName)/\(point.name) disk \(disk)", report: progress)
        meter.addTotal(image.size)
        defer { meter.finish() }
        let tally = Mutex(report)
        let failure = Mutex<(any Error)?>(nil)
        // Where a file target has holes, it reads as zeros: nothing there is read.
        let hasData =
            target.isDevice || target.isNew || base != nil
            ? nil : Posix.dataPositions(target.fd, size: image.size, chunkSize: image.chunkSize)
        target.adviseSequential()
        let baseRefs = baseImage
        // Workers take positions in disk order, so the target is read nearly sequentially and
        // the kernel's read-ahead keeps up; twice as many as cores, as each waits on reads.
        let next = Atomic<Int>(0)
        runWorkers(2 * max(1, ProcessInfo.processInfo.activeProcessorCount)) { _ in
            while failure.withLock({ $0 == nil }) {
                let position = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard position < image.refs.count else { return }
                let length = image.length(of: position)
                do {
                    let outcome = try restorePosition(
                        position, of: image, base: baseRefs, hasData: hasData?[position] ?? true, target: target,
                        reader: reader)
                    tally.withLock { $0.count(outcome, length: length) }
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                }
                meter.advance(Int64(length))
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        try target.finish()
        report = tally.withLock { $0 }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    /// Restores one chunk position and says what it took.
    private func restorePosition(
        _ position: Int, of image: FlatImage, base: FlatImage?, hasData: Bool, target: RestoreTarget,
        reader: ImageReader
    ) throws -> PositionOutcome {
        let ref = image.refs[position]
        let length = image.length(of: position)
        let offset = Int64(position) * Int64(image.chunkSize)
        // Made only where a chunk is read or written: a position left alone costs nothing.
        var buffer: [UInt8] = []
        var compared = false
        if target.isNew {
            if ref == .zero { return .unchanged(compared: false) }
        } else if let base {
            if position < base.refs.count && base.refs[position] == ref && base.length(of: position) == length {
                return .unchanged(compared: false)
            }
        } else if !hasData {
            // A hole in the file: it reads as zeros.
            if ref == .zero { return .unchanged(compared: false) }
        } else {
            buffer = [UInt8](repeating: 0, count: length)
            let read = try buffer.withUnsafeMutableBytes {
                try Posix.pread(target.fd, $0.baseAddress!, length, offset, path: target.name)
            }
            compared = true
            // A file shorter than the disk was grown: what lies past its old end reads as zeros.
            let same = buffer.withUnsafeBytes { bytes -> Bool in
                let held = UnsafeRawBufferPointer(rebasing: bytes[0..<read])
                switch ref {
                case .zero: return bytes.isAllZero
                case .data(let hash): return read == length && chunks.chunkId(of: held) == hash
                }
            }
            if same { return .unchanged(compared: true) }
        }
        if ref == .zero {
            try target.zero(at: offset, length: length)
            FaultInjection.reached("restore-written")
            return .zeroed(compared: compared)
        }
        if buffer.count != length { buffer = [UInt8](repeating: 0, count: length) }
        try buffer.withUnsafeMutableBytes { raw in
            _ = try reader.read(at: offset, into: raw)
            try Posix.pwriteAll(target.fd, UnsafeRawBufferPointer(raw), offset, path: target.name)
        }
        FaultInjection.reached("restore-written")
        return .written(compared: compared)
    }

    /// Checks that `target` holds `base` at up to 32 positions spread over the disk, half
    /// where the two points differ and half where they agree; returns the bytes read. A
    /// position may also hold the point's chunk already (a restore cut off part way, run
    /// again). A restore that trusted a wrong `--from-point` would leave a disk that is
    /// neither point wherever the two agree; this refuses one onto another disk entirely.
    private func checkHolds(_ target: RestoreTarget, _ base: FlatImage, reader: ImageReader, base point: Point)
        throws -> Int64
    {
        let image = reader.image
        let comparable = image.refs.indices.filter {
            $0 < base.refs.count && base.length(of: $0) == image.length(of: $0)
        }
        let differing = comparable.filter { base.refs[$0] != image.refs[$0] }
        let agreeing = comparable.filter { base.refs[$0] == image.refs[$0] && base.refs[$0] != .zero }
        func spread(_ positions: [Int]) -> [Int] {
            let step = max(1, (positions.count + 15) / 16)
            return stride(from: 0, to: positions.count, by: step).map { positions[$0] }
        }
        let size = try target.currentSize()
        var read: Int64 = 0
        for position in spread(differing) + spread(agreeing) {
            let offset = Int64(position) * Int64(base.chunkSize)
            let length = base.length(of: position)
            var buffer = [UInt8](repeating: 0, count: length)
            let count =
                offset + Int64(length) <= size
                ? try buffer.withUnsafeMutableBytes {
                    try Posix.pread(target.fd, $0.baseAddress!, length, offset, path: target.name)
                } : 0
            read += Int64(count)
            let held: ChunkRef = buffer.withUnsafeBytes { $0.isAllZero ? .zero : .data(chunks.chunkId(of: $0)) }
            guard count == length, held == base.refs[position] || held == image.refs[position] else {
                throw VaultError.invalid(
                    "\(target.name) does not hold point \(point.name): its bytes at offset \(offset) are neither that point's nor this one's; restore without --from-point, which compares every chunk; nothing was written"
                )
            }
        }
        return read
    }
}
