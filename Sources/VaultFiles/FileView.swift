import Foundation
import VaultCore

/// One listed file, for `files ls --json`. A name or target that is not UTF-8 shows with
/// U+FFFD in `name` (`target`), and exactly, base64-encoded, in `nameBytes` (`targetBytes`).
public struct FileView: Encodable, Sendable {
    public var name: String
    public var nameBytes: String?
    public var kind: String
    public var mode: String
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var links: UInt32
    public var inode: UInt64
    public var modified: String
    public var target: String?
    public var targetBytes: String?
    /// Set on an entry whose name no file may have (holding `/` or NUL, a second `.` or
    /// `..`): the mount never shows it and `files get` leaves it out.
    public var unusable: Bool?

    public init(name: FileName, _ a: FileAttributes, target: FileName?, unusable: Bool = false) {
        self.name = name.description
        nameBytes = name.string == nil ? Data(name.bytes).base64EncodedString() : nil
        self.target = target?.description
        targetBytes = target.flatMap { $0.string == nil ? Data($0.bytes).base64EncodedString() : nil }
        self.unusable = unusable ? true : nil
        kind = a.kind.rawValue
        mode = String(a.permissions, radix: 8)
        uid = a.uid
        gid = a.gid
        size = a.size
        links = a.links
        inode = a.inode
        modified = Units.formatTime(Date(timeIntervalSince1970: Double(a.modified.seconds)))
    }
}
