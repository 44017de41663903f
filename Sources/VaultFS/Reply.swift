import Foundation

/// File attributes as the tree knows them; the bridge turns them into `struct stat`.
struct Attributes {
    var inode: UInt64
    var kind: Node.Kind
    var mode: UInt32
    var size: Int64
    var blocks: Int64
    var time: Date
}

struct DirectoryEntry {
    var name: String
    var inode: UInt64
    var kind: Node.Kind
}

/// The one answer each request gets. Handlers return a `Reply`; only the bridge sends it,
/// so a request can neither go unanswered nor be answered twice.
enum Reply {
    case error(Int32)
    case entry(Attributes, timeout: Double)
    case attributes(Attributes, timeout: Double)
    case opened(handle: UInt64, keepCache: Bool, directIO: Bool)
    case data([UInt8])
    case directory([DirectoryEntry], offset: Int, maxSize: Int)
    case link(String)
    case offset(Int64)
    case statfs(blocks: UInt64, free: UInt64, files: UInt64)
    case done
}
