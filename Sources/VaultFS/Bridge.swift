internal import CFuse3
import Foundation
import Glibc

/// Turns a `Reply` into the one libfuse reply call for a request.
enum Bridge {
    static func send(_ reply: Reply, _ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>? = nil, uid: UInt32, gid: UInt32) {
        switch reply {
        case .error(let code):
            fuse_reply_err(req, code)
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
        case .opened(let handle, let keepCache, let directIO):
            guard let fi else { fuse_reply_err(req, EIO); return }
            fi.pointee.fh = handle
            vfs_fi_set_keep_cache(fi, keepCache ? 1 : 0)
            vfs_fi_set_direct_io(fi, directIO ? 1 : 0)
            fuse_reply_open(req, fi)
        case .data(let bytes):
            bytes.withUnsafeBytes { fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
        case .directory(let entries, let offset, let maxSize):
            var buffer = [CChar](repeating: 0, count: maxSize)
            var used = 0
            buffer.withUnsafeMutableBufferPointer { out in
                for index in entries.indices where index >= offset {
                    var st = Glibc.stat()
                    st.st_ino = UInt(entries[index].inode)
                    st.st_mode = mode(of: entries[index].kind)
                    let size = entries[index].name.withCString {
                        fuse_add_direntry(req, out.baseAddress! + used, maxSize - used, $0, &st, off_t(index + 1))
                    }
                    if size > maxSize - used { break }
                    used += size
                }
                fuse_reply_buf(req, out.baseAddress, used)
            }
        case .link(let target):
            fuse_reply_readlink(req, target)
        case .offset(let offset):
            fuse_reply_lseek(req, off_t(offset))
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
    }

    static func mode(of kind: Node.Kind) -> mode_t {
        switch kind {
        case .directory: return S_IFDIR
        case .file: return S_IFREG
        case .symlink: return S_IFLNK
        }
    }

    static func stat(_ a: Attributes, uid: UInt32, gid: UInt32) -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = UInt(a.inode)
        st.st_mode = mode(of: a.kind) | a.mode
        st.st_nlink = a.kind == .directory ? 2 : 1
        st.st_uid = uid
        st.st_gid = gid
        st.st_size = off_t(a.size)
        st.st_blocks = blkcnt_t(a.blocks)
        st.st_blksize = 1 << 20
        let seconds = a.time.timeIntervalSince1970
        let time = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
        st.st_atim = time
        st.st_mtim = time
        st.st_ctim = time
        return st
    }
}
