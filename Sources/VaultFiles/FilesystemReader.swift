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

/// A name (or link target) inside a filesystem, as the bytes the disk holds. Linux names are
/// bytes, not text: a guest may write any but `/` and NUL, and a restore gives back exactly
/// those bytes, UTF-8 or not.
public struct FileName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ text: String) { bytes = Array(text.utf8) }
    public init(stringLiteral text: String) { self.init(text) }

    /// The name as text when it is UTF-8, else nil.
    public var string: String? { String(validating: bytes, as: UTF8.self) }

    /// The name as text for people: exact when it is UTF-8, else with U+FFFD for each byte
    /// that is not. Never use it to find or write the file.
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// Whether a directory entry may carry this name: not empty, no `/` or NUL, not `.` or `..`.
    public var isUsable: Bool {
        !bytes.isEmpty && !bytes.contains(0x2F) && !bytes.contains(0) && bytes != [0x2E] && bytes != [0x2E, 0x2E]
    }

    /// The name for a terminal, quoted as GNU `ls` quotes it: as it is when every character
    /// prints; else in `$'...'`, with control characters and bytes that are not UTF-8 as
    /// escapes, so a name cannot move the cursor, clear the screen or forge a line.
    public var quoted: String {
        guard let text = string, !text.unicodeScalars.contains(where: Self.isControl) else {
            var out = "$'"
            var index = 0
            while index < bytes.count {
                // The longest valid UTF-8 sequence here, if any (1 to 4 bytes).
                var length = 0
                for candidate in (1...4).reversed() where index + candidate <= bytes.count {
                    if let piece = String(validating: bytes[index..<(index + candidate)], as: UTF8.self),
                        piece.unicodeScalars.count == 1
                    {
                        length = candidate
                        break
                    }
                }
                if length > 0,
                    let scalar = String(validating: bytes[index..<(index + length)], as: UTF8.self)?.unicodeScalars
                        .first,
                    !Self.isControl(scalar)
                {
                    out += scalar == "'" ? "\\'" : scalar == "\\" ? "\\\\" : String(scalar)
                    index += length
                    continue
                }
                let byte = bytes[index]
                switch byte {
                case 0x07: out += "\\a"
                case 0x08: out += "\\b"
                case 0x09: out += "\\t"
                case 0x0A: out += "\\n"
                case 0x0B: out += "\\v"
                case 0x0C: out += "\\f"
                case 0x0D: out += "\\r"
                case 0x1B: out += "\\E"
                default: out += "\\" + String(byte, radix: 8).leftPadded(3)
                }
                index += 1
            }
            return out + "'"
        }
        return text
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
}

/// One name in a directory.
public struct FileEntry: Sendable, Equatable {
    public var name: FileName
    public var inode: UInt64
    /// What the directory says the entry is, when it records that.
    public var kind: FileKind?

    public init(name: FileName, inode: UInt64, kind: FileKind?) {
        self.name = name
        self.inode = inode
        self.kind = kind
    }
}

/// A directory's entries, and apart from them those whose names no entry may have (holding
/// `/` or NUL, a second `.` or `..`): those are never shown or followed, only reported.
public struct DirectoryListing: Sendable, Equatable {
    public var entries: [FileEntry]
    public var unusable: [FileEntry]

    public init(entries: [FileEntry], unusable: [FileEntry]) {
        self.entries = entries
        self.unusable = unusable
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
    func entries(_ directory: UInt64) throws -> DirectoryListing
    /// Opens a regular file for reading. What it costs to find a file's blocks is paid here,
    /// once: each read and seek of the open file then costs the same however fragmented it is.
    func open(_ inode: UInt64) throws -> any OpenFile
    func linkTarget(_ inode: UInt64) throws -> FileName
    func attributeNames(_ inode: UInt64) throws -> [String]
    func attribute(_ inode: UInt64, named name: String) throws -> [UInt8]
}

/// A regular file opened for reading: by `vaultfs` for each open of a file under `files/`,
/// by `vaultctl files get` for each file it copies out.
public protocol OpenFile: Sendable {
    /// The file's size when it was opened.
    var size: Int64 { get }
    /// Copies file bytes at `offset`; returns how many (0 at the end).
    func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int
    /// SEEK_DATA (`data`) or SEEK_HOLE from `offset`; nil past the end.
    func seek(from offset: Int64, data: Bool) throws -> Int64?
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
            do { return .success(try reader.init(source: source)) } catch let error as VaultError {
                return .failure(error)
            } catch {
                return .failure(VaultError(.corrupt, "\(error)"))
            }
        }
        if let other = foreignName(header) {
            return .failure(
                VaultError(.unsupportedFormat, "\(other): not a filesystem vaultfs reads (ext2, ext3, ext4)"))
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
