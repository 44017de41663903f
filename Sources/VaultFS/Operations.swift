internal import CFuse3
import Foundation
import Glibc
import VaultFiles

/// The low-level operations table. Every callback is a non-capturing closure that finds the
/// `MountOperations` through the session's userdata and hands its `Reply` to `Bridge.send`.
/// Built in a nonisolated function: closures in top-level code would be main-actor isolated
/// and trap when libfuse calls them from its worker threads.
func makeOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()
    ops.`init` = { _, conn in
        if let conn { vfs_conn_tune(conn, 1 << 20, UInt32(Mount.readAheadKiB) << 10) }
    }
    ops.lookup = { req, parent, name in
        respond(req) { $0.lookup(parent: UInt64(parent), name: fileName(name!)) }
    }
    ops.forget = { req, _, _ in fuse_reply_none(req) }
    ops.getattr = { req, ino, _ in respond(req) { $0.getattr(UInt64(ino)) } }
    ops.readlink = { req, ino in respond(req) { $0.readlink(UInt64(ino)) } }
    ops.opendir = { req, ino, fi in respond(req, fi) { $0.opendir(UInt64(ino)) } }
    ops.readdir = { req, _, size, off, fi in
        respond(req, fi) { $0.readdir(handle: fi!.pointee.fh, offset: Int(off), size: size) }
    }
    ops.readdirplus = { req, _, size, off, fi in
        respond(req, fi) { $0.readdirplus(handle: fi!.pointee.fh, offset: Int(off), size: size) }
    }
    ops.getxattr = { req, ino, name, size in
        respond(req) { $0.getxattr(UInt64(ino), name: String(cString: name!), size: size) }
    }
    ops.listxattr = { req, ino, size in respond(req) { $0.listxattr(UInt64(ino), size: size) } }
    ops.releasedir = { req, _, fi in respond(req, fi) { $0.release(handle: fi!.pointee.fh) } }
    ops.open = { req, ino, fi in respond(req, fi) { $0.open(UInt64(ino), flags: vfs_fi_flags(fi)) } }
    ops.read = { req, _, size, off, fi in
        respond(req, fi) { $0.read(handle: fi!.pointee.fh, offset: Int64(off), size: size) }
    }
    ops.release = { req, _, fi in respond(req, fi) { $0.release(handle: fi!.pointee.fh) } }
    ops.lseek = { req, _, off, whence, fi in
        respond(req, fi) { $0.lseek(handle: fi!.pointee.fh, offset: Int64(off), whence: whence) }
    }
    ops.statfs = { req, _ in respond(req) { $0.statfs() } }
    ops.mkdir = { req, parent, name, _ in
        respond(req) { $0.mkdir(parent: UInt64(parent), name: String(cString: name!)) }
    }
    ops.rmdir = { req, parent, name in
        respond(req) { $0.rmdir(parent: UInt64(parent), name: String(cString: name!)) }
    }
    // An instant restore's image is the one file that takes writes (and fsync).
    ops.write = { req, _, buf, size, off, fi in
        respond(req, fi) {
            $0.write(handle: fi!.pointee.fh, offset: Int64(off), bytes: UnsafeRawBufferPointer(start: buf, count: size))
        }
    }
    ops.fsync = { req, _, _, fi in respond(req, fi) { $0.flush(handle: fi!.pointee.fh) } }
    ops.setattr = { req, ino, attr, toSet, _ in
        let size = toSet & FUSE_SET_ATTR_SIZE != 0 ? Int64(attr!.pointee.st_size) : nil
        respond(req) { $0.setattr(UInt64(ino), newSize: size) }
    }
    ops.fallocate = { req, _, _, _, _, fi in respond(req, fi) { $0.fallocate(handle: fi!.pointee.fh) } }
    // Everything else that would change the tree or a file is refused: backups are read-only.
    ops.mknod = { req, _, _, _, _ in fuse_reply_err(req, Refusal.readOnly.errno) }
    ops.unlink = { req, _, _ in fuse_reply_err(req, Refusal.readOnly.errno) }
    ops.symlink = { req, _, _, _ in fuse_reply_err(req, Refusal.readOnly.errno) }
    ops.rename = { req, _, _, _, _, _ in fuse_reply_err(req, Refusal.readOnly.errno) }
    ops.link = { req, _, _, _ in fuse_reply_err(req, Refusal.readOnly.errno) }
    ops.create = { req, _, _, _, _ in fuse_reply_err(req, Refusal.readOnly.errno) }
    ops.setxattr = { req, _, _, _, _, _ in fuse_reply_err(req, Refusal.readOnly.errno) }
    ops.removexattr = { req, _, _ in fuse_reply_err(req, Refusal.readOnly.errno) }
    return ops
}

/// What the session's userdata points to: the operations the mount answers with.
final class Served: Sendable {
    let operations: any MountOperations
    init(_ operations: any MountOperations) { self.operations = operations }
}

/// Finds the request's operations, runs the handler and sends its one reply.
private func respond(
    _ req: fuse_req_t?, _ fi: UnsafeMutablePointer<fuse_file_info>? = nil, _ handler: (any MountOperations) -> Reply
) {
    let fs = Unmanaged<Served>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue().operations
    let reply = handler(fs)
    if !Bridge.send(reply, req, fi, uid: fs.uid, gid: fs.gid), case .opened(let handle, _, _, _) = reply {
        _ = fs.release(handle: handle)
    }
}

/// A name the kernel passes, as its bytes: names inside points need not be UTF-8.
private func fileName(_ name: UnsafePointer<CChar>) -> FileName {
    FileName(UnsafeRawBufferPointer(start: name, count: strlen(name)).map { $0 })
}
