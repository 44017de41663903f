import VaultCore

/// What a file is, as `stat` tells it.
public enum FileKind: String, Sendable, Codable {
    case file, directory, symlink, characterDevice, blockDevice, fifo, socket

    /// From the `S_IFMT` bits of a mode.
    public init?(mode: UInt32) {
        switch mode & 0o170000 {
        case 0o100000: self = .file
        case 0o040000: self = .directory
        case 0o120000: self = .symlink
        case 0o020000: self = .characterDevice
        case 0o060000: self = .blockDevice
        case 0o010000: self = .fifo
        case 0o140000: self = .socket
        default: return nil
        }
    }
}

/// A time as a filesystem keeps it: seconds since the epoch and nanoseconds.
public struct FileTime: Sendable, Equatable, Codable {
    public var seconds: Int64
    public var nanoseconds: UInt32
}

/// A file's attributes as its filesystem recorded them: original owner, group and mode.
public struct FileAttributes: Sendable, Equatable {
    public var inode: UInt64
    public var kind: FileKind
    /// Permission bits with setuid, setgid and sticky (no type bits).
    public var permissions: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var links: UInt32
    public var size: Int64
    /// 512-byte blocks the file holds.
    public var blocks: Int64
    public var accessed: FileTime
    public var modified: FileTime
    public var changed: FileTime
    public var deviceMajor: UInt32 = 0
    public var deviceMinor: UInt32 = 0
}

/// One name in a directory.
public struct FileEntry: Sendable, Equatable {
    public var name: String
    public var inode: UInt64
    /// What the directory says the entry is, when it records that.
    public var kind: FileKind?

    public init(name: String, inode: UInt64, kind: FileKind?) {
        self.name = name
        self.inode = inode
        self.kind = kind
    }
}

/// What point.json says about a filesystem.
public struct FilesystemSummary: Sendable, Equatable, Codable {
    public var type: String
    public var label: String?
    public var uuid: String?
    /// Anything a user should know about what is shown (a journal not replayed).
    public var notes: [String]
}

/// A read-only filesystem inside a disk or partition. Adding a filesystem means one new
/// type conforming to this, listed in `Filesystems.readers`; nothing above changes.
/// Errors: `.corrupt` for damaged metadata or unreadable chunks, `.notFound`,
/// `.invalidArgument` (not a directory, not a symlink), `.noAttribute`.
public protocol FilesystemReader: AnyObject, Sendable {
    /// Opens the filesystem, or throws when the source does not hold one this type reads.
    init(source: any ByteSource) throws
    /// Whether the first 68 KiB of a source look like this filesystem (a magic number).
    static func recognizes(_ header: [UInt8]) -> Bool
    var rootInode: UInt64 { get }
    var summary: FilesystemSummary { get }
    func attributes(_ inode: UInt64) throws -> FileAttributes
    func entries(_ directory: UInt64) throws -> [FileEntry]
    /// Copies file bytes at `offset`; returns how many (0 at the end).
    func read(_ inode: UInt64, at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int
    func linkTarget(_ inode: UInt64) throws -> String
    /// SEEK_DATA (`data`) or SEEK_HOLE from `offset`; nil past the end.
    func seek(_ inode: UInt64, from offset: Int64, data: Bool) throws -> Int64?
    func attributeNames(_ inode: UInt64) throws -> [String]
    func attribute(_ inode: UInt64, named name: String) throws -> [UInt8]
}

/// The filesystems vaultfs reads, and what it says about those it does not.
public enum Filesystems {
    public static let readers: [any FilesystemReader.Type] = [Ext2Filesystem.self]
    static let headerSize = 68 << 10

    /// Opens the filesystem a source holds, or says why none is shown.
    public static func open(_ source: any ByteSource) -> Result<any FilesystemReader, VaultError> {
        let header: [UInt8]
        do {
            header = try source.bytes(at: 0, count: Int(min(Int64(headerSize), source.size)))
        } catch {
            return .failure(VaultError(.corrupt, "cannot read its first bytes", cause: error))
        }
        for reader in readers where reader.recognizes(header) {
            do { return .success(try reader.init(source: source)) } catch let error as VaultError { return .failure(error) } catch {
                return .failure(VaultError(.corrupt, "\(error)"))
            }
        }
        if let other = foreignName(header) {
            return .failure(VaultError(.unsupportedFormat, "\(other): not a filesystem vaultfs reads (ext2, ext3, ext4)"))
        }
        return .failure(VaultError(.unsupportedFormat, "no filesystem found"))
    }

    /// Names what a source holds when no reader takes it, from well-known magic numbers.
    static func foreignName(_ h: [UInt8]) -> String? {
        func has(_ text: String, at offset: Int) -> Bool {
            let bytes = Array(text.utf8)
            return h.count >= offset + bytes.count && Array(h[offset..<offset + bytes.count]) == bytes
        }
        if has("XFSB", at: 0) { return "XFS" }
        if has("NTFS    ", at: 3) { return "NTFS" }
        if has("FAT32   ", at: 82) || has("FAT16   ", at: 54) || has("FAT12   ", at: 54) { return "FAT" }
        if has("LABELONE", at: 512) { return "LVM physical volume" }
        if has("_BHRfS_M", at: 65536 + 64) { return "btrfs" }
        if has("SWAPSPACE2", at: 4086) { return "swap" }
        if has("LUKS", at: 0) { return "LUKS (encrypted)" }
        return nil
    }
}

extension FileAttributes {
    /// The mode as `ls -l` shows it (`drwxr-xr-x`).
    public var modeText: String {
        let type: Character
        switch kind {
        case .file: type = "-"
        case .directory: type = "d"
        case .symlink: type = "l"
        case .characterDevice: type = "c"
        case .blockDevice: type = "b"
        case .fifo: type = "p"
        case .socket: type = "s"
        }
        var text = [type]
        let bits = Array("rwxrwxrwx")
        for i in 0..<9 { text.append(permissions & (0o400 >> UInt32(i)) != 0 ? bits[i] : "-") }
        if permissions & 0o4000 != 0 { text[3] = text[3] == "x" ? "s" : "S" }
        if permissions & 0o2000 != 0 { text[6] = text[6] == "x" ? "s" : "S" }
        if permissions & 0o1000 != 0 { text[9] = text[9] == "x" ? "t" : "T" }
        return String(text)
    }
}
