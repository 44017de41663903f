import Foundation
import VaultCore
import VaultFiles

/// File attributes as the tree knows them; the bridge turns them into `struct stat`.
struct Attributes {
    var inode: UInt64
    var kind: Node.Kind
    var mode: UInt32
    var size: Int64
    var blocks: Int64
    var time: Date
    /// Owner and group of a node that has its own (inside a filesystem); otherwise the
    /// mounting user's.
    var owner: (uid: UInt32, gid: UInt32)? = nil
    var links: UInt32? = nil
    /// Access, modification and change times of a node that keeps them apart.
    var times: (access: timespec, modify: timespec, change: timespec)? = nil
    var device: (major: UInt32, minor: UInt32)? = nil
}

struct DirectoryEntry {
    /// The name's bytes: a name inside a point need not be UTF-8.
    var name: FileName
    var inode: UInt64
    /// nil when the filesystem does not record it (the kernel then asks).
    var kind: Node.Kind?
}

/// The one answer each request gets. Handlers return a `Reply`; only the bridge sends it,
/// so a request can neither go unanswered nor be answered twice.
enum Reply {
    /// A request refused for a reason of the mount's own.
    case refused(Refusal)
    /// A request that failed: the error's own errno (`VaultError.errno`), EIO for others.
    case failed(any Error)
    case entry(Attributes, timeout: Double)
    case attributes(Attributes, timeout: Double)
    case opened(handle: UInt64, keepCache: Bool, directIO: Bool, cacheDirectory: Bool = false)
    case data([UInt8])
    /// An image read as the cache holds it: sent with one writev straight from the cached
    /// frames, with no copy into a reply buffer first.
    case pieces([ImagePiece])
    case directory([DirectoryEntry], offset: Int, maxSize: Int)
    /// readdirplus: each entry with its attributes and their cache time, asked for only for
    /// the entries that fit (nil sends the name alone).
    case directoryPlus(
        [DirectoryEntry], offset: Int, maxSize: Int, attributes: (DirectoryEntry) -> (Attributes, Double)?)
    /// The size an extended attribute value or name list needs (a size query).
    case xattrSize(Int)
    case link(FileName)
    case offset(Int64)
    /// How many bytes of a write were taken.
    case written(Int)
    case statfs(blocks: UInt64, free: UInt64, files: UInt64)
    case done
}

extension Reply {
    /// The errno this reply sends, or nil when it is not a refusal or failure.
    var errno: Int32? {
        switch self {
        case .refused(let reason): return reason.errno
        case .failed(let error): return errnoOf(error)
        default: return nil
        }
    }
}
