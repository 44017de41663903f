internal import CFuse3
import Foundation
import Glibc
import VaultCore
import VaultFiles

/// Turns a `Reply` into the one libfuse reply call for a request.
enum Bridge {
    /// Whether an open reached the kernel: a request interrupted meanwhile (the caller gave
    /// up) gets no release, so its handle is the caller's to close.
    @discardableResult
    static func send(
        _ reply: Reply, _ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>? = nil, uid: UInt32, gid: UInt32
    ) -> Bool {
        switch reply {
        case .refused(let reason):
            fuse_reply_err(req, reason.errno)
        case .failed(let error):
            fuse_reply_err(req, errnoOf(error))
        case .done:
            fuse_reply_err(req, 0)
        case .entry(let attributes, let timeout):
            var entry = fuse_entry_param()
            entry.ino = fuse_ino_t(attributes.inode)
            entry.generation = 1
            entry.attr = stat(attributes, uid: uid, gid: gid)
            entry.attr_timeout = timeout
            entry.entry_timeout = timeout
            fuse_reply_entry(req, &entry)
        case .attributes(let attributes, let timeout):
            var st = stat(attributes, uid: uid, gid: gid)
            fuse_reply_attr(req, &st, timeout)
        case .opened(let handle, let keepCache, let directIO, let cacheDirectory):
            guard let fi else {
                fuse_reply_err(req, Refusal.io.errno)
                return false
            }
            fi.pointee.fh = handle
            vfs_fi_set_keep_cache(fi, keepCache ? 1 : 0)
            vfs_fi_set_direct_io(fi, directIO ? 1 : 0)
            vfs_fi_set_cache_readdir(fi, cacheDirectory ? 1 : 0)
            return fuse_reply_open(req, fi) == 0
        case .data(let bytes):
            _ = bytes.withUnsafeBytes {
                fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count)
            }
        case .pieces(let pieces):
            sendPieces(pieces, req)
        case .directory(let entries, let offset, let maxSize):
            var buffer = [CChar](repeating: 0, count: maxSize)
            var used = 0
            buffer.withUnsafeMutableBufferPointer { out in
                for index in entries.indices where index >= offset {
                    var st = Glibc.stat()
                    st.st_ino = UInt(entries[index].inode)
                    st.st_mode = entries[index].kind.map(mode(of:)) ?? 0
                    let size = entries[index].name.withCString {
                        fuse_add_direntry(req, out.baseAddress! + used, maxSize - used, $0, &st, off_t(index + 1))
                    }
                    if size > maxSize - used { break }
                    used += size
                }
                fuse_reply_buf(req, out.baseAddress, used)
            }
        case .directoryPlus(let entries, let offset, let maxSize, let attributesOf):
            var buffer = [CChar](repeating: 0, count: maxSize)
            var used = 0
            buffer.withUnsafeMutableBufferPointer { out in
                for index in entries.indices where index >= offset {
                    let item = entries[index]
                    var entry = fuse_entry_param()
                    // "." and "..", and entries whose attributes cannot be read, go without
                    // attributes (inode 0): the kernel then looks them up itself.
                    if item.name.bytes != [0x2E], item.name.bytes != [0x2E, 0x2E],
                        let (attributes, timeout) = attributesOf(item)
                    {
                        entry.ino = fuse_ino_t(attributes.inode)
                        entry.generation = 1
                        entry.attr = stat(attributes, uid: uid, gid: gid)
                        entry.attr_timeout = timeout
                        entry.entry_timeout = timeout
                    } else {
                        entry.attr.st_ino = UInt(item.inode)
                        entry.attr.st_mode = item.kind.map(mode(of:)) ?? 0
                    }
                    let size = item.name.withCString {
                        fuse_add_direntry_plus(
                            req, out.baseAddress! + used, maxSize - used, $0, &entry, off_t(index + 1))
                    }
                    if size > maxSize - used { break }
                    used += size
                }
                fuse_reply_buf(req, out.baseAddress, used)
            }
        case .xattrSize(let size):
            fuse_reply_xattr(req, size)
        case .link(let target):
            _ = target.withCString { fuse_reply_readlink(req, $0) }
        case .offset(let offset):
            fuse_reply_lseek(req, off_t(offset))
        case .written(let count):
            fuse_reply_write(req, count)
        case .statfs(let blocks, let free, let files):
            var sv = statvfs()
            sv.f_bsize = 4096
            sv.f_frsize = 4096
            sv.f_blocks = fsblkcnt_t(blocks)
            sv.f_bfree = fsblkcnt_t(free)
            sv.f_bavail = fsblkcnt_t(free)
            sv.f_files = fsfilcnt_t(files)
            sv.f_namemax = 255
            fuse_reply_statfs(req, &sv)
        }
        return true
    }

    /// Zeros that replies point at, written once so that each of its pages is a page of its
    /// own. A page never written maps the kernel's shared zero page, which the kernel cannot
    /// pin the fast way: it walked the page tables for each page of each reply, a third of
    /// the cost of replying with zeros (perf, a cold read of the corpus image).
    private nonisolated(unsafe) static let zeros: UnsafeRawBufferPointer = {
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        return UnsafeRawBufferPointer(zeros)
    }()

    /// One reply whose vector points into each piece: every frame is pinned while the
    /// kernel copies from it.
    private static func sendPieces(_ pieces: [ImagePiece], _ req: fuse_req_t?) {
        var vectors: [iovec] = []
        vectors.reserveCapacity(pieces.count + 1)
        func pin(_ index: Int) {
            guard index < pieces.count else {
                _ = vectors.withUnsafeBufferPointer { fuse_reply_iov(req, $0.baseAddress, Int32($0.count)) }
                return
            }
            switch pieces[index] {
            case .zeros(var count):
                while count > 0 {
                    let take = min(count, zeros.count)
                    vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: zeros.baseAddress), iov_len: take))
                    count -= take
                }
                pin(index + 1)
            case .bytes(let frame, let range):
                frame.withUnsafeBytes { raw in
                    vectors.append(
                        iovec(
                            iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress! + range.lowerBound),
                            iov_len: range.count))
                    pin(index + 1)
                }
            }
        }
        pin(0)
    }

    static func mode(of kind: Node.Kind) -> mode_t {
        switch kind {
        case .directory: return S_IFDIR
        case .file: return S_IFREG
        case .symlink: return S_IFLNK
        case .characterDevice: return S_IFCHR
        case .blockDevice: return S_IFBLK
        case .fifo: return S_IFIFO
        case .socket: return S_IFSOCK
        }
    }

    /// glibc's makedev, a macro Swift cannot see: the Linux dev_t layout.
    static func deviceNumber(_ major: UInt32, _ minor: UInt32) -> UInt {
        let major = UInt(major)
        let minor = UInt(minor)
        return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12) | ((major & ~0xfff) << 32)
    }

    static func stat(_ a: Attributes, uid: UInt32, gid: UInt32) -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = UInt(a.inode)
        st.st_mode = mode(of: a.kind) | a.mode
        st.st_nlink = UInt(a.links ?? (a.kind == .directory ? 2 : 1))
        st.st_uid = a.owner?.uid ?? uid
        st.st_gid = a.owner?.gid ?? gid
        if let device = a.device { st.st_rdev = deviceNumber(device.major, device.minor) }
        st.st_size = off_t(a.size)
        st.st_blocks = blkcnt_t(a.blocks)
        st.st_blksize = 1 << 20
        let seconds = a.time.timeIntervalSince1970
        let time = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
        st.st_atim = a.times?.access ?? time
        st.st_mtim = a.times?.modify ?? time
        st.st_ctim = a.times?.change ?? time
        return st
    }
}

extension FileName {
    /// Calls `body` with the name as a NUL-terminated C string (a name never holds NUL).
    func withCString<T>(_ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        try (bytes + [0]).withUnsafeBufferPointer {
            try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }
}
