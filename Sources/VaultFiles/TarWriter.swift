import VaultCore

/// Writes a POSIX (pax) tar stream: ustar headers, with pax records for what ustar cannot
/// hold (long names, large sizes and ids, nanosecond times, extended attributes as GNU tar
/// and bsdtar read them: `SCHILY.xattr.NAME`).
public final class TarWriter {
    /// One file, folder or link; names and link targets are the bytes the disk holds.
    public struct Entry {
        public var path: FileName
        public var attributes: FileAttributes
        public var linkTarget: FileName?
        /// For a second name of a hard-linked file: the name it was first written under.
        public var hardLinkTo: FileName?
        public var xattrs: [(name: String, value: [UInt8])]
    }

    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private var buffer: [UInt8] = []
    private static let flushSize = 1 << 20

    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.sink = sink
        buffer.reserveCapacity(Self.flushSize + 1024)
    }

    /// Writes an entry's header; a regular file's `attributes.size` bytes must follow through
    /// `writeData`, then `endData`.
    public func begin(_ entry: Entry) throws {
        let a = entry.attributes
        var records: [(String, [UInt8])] = []
        var name = entry.path.bytes
        if a.kind == .directory, name.last != 0x2F { name.append(0x2F) }
        var nameField = name
        var prefixField: [UInt8] = []
        let link = (entry.hardLinkTo ?? entry.linkTarget)?.bytes ?? []
        let needsPath = nameField.count > 100 && Self.split(nameField) == nil
        // ustar fields hold any bytes; a pax record holds UTF-8 unless the header says the
        // names are raw bytes (as GNU tar and bsdtar read `hdrcharset=BINARY`).
        if (needsPath && FileName(name).string == nil) || (link.count > 100 && FileName(link).string == nil) {
            records.append(("hdrcharset", Array("BINARY".utf8)))
        }
        if nameField.count > 100 {
            // ustar can split at a slash; anything longer goes in a pax record.
            if let split = Self.split(nameField) {
                (prefixField, nameField) = split
            } else {
                records.append(("path", name))
                nameField = Array(nameField.suffix(99))
            }
        }
        if link.count > 100 { records.append(("linkpath", link)) }
        let size: Int64 = a.kind == .file && entry.hardLinkTo == nil ? a.size : 0
        if size > 0o77777777777 { records.append(("size", Array(String(size).utf8))) }
        if a.uid > 0o7777777 { records.append(("uid", Array(String(a.uid).utf8))) }
        if a.gid > 0o7777777 { records.append(("gid", Array(String(a.gid).utf8))) }
        records.append(("mtime", Array(Self.time(a.modified).utf8)))
        records.append(("atime", Array(Self.time(a.accessed).utf8)))
        for (key, value) in entry.xattrs { records.append(("SCHILY.xattr.\(key)", value)) }
        if !records.isEmpty {
            var body: [UInt8] = []
            for (key, value) in records { body += Self.record(key, value) }
            let last = name.split(separator: 0x2F).last.map(Array.init) ?? Array("x".utf8)
            try header(
                name: Array((Array("PaxHeaders/".utf8) + last).prefix(100)), prefix: [],
                mode: 0o644, uid: 0, gid: 0, size: Int64(body.count), mtime: a.modified.seconds,
                type: UInt8(ascii: "x"),
                link: [], major: 0, minor: 0)
            try append(body)
            try pad(Int64(body.count))
        }
        let type: UInt8
        switch a.kind {
        case .file: type = entry.hardLinkTo == nil ? UInt8(ascii: "0") : UInt8(ascii: "1")
        case .directory: type = UInt8(ascii: "5")
        case .symlink: type = UInt8(ascii: "2")
        case .characterDevice: type = UInt8(ascii: "3")
        case .blockDevice: type = UInt8(ascii: "4")
        case .fifo: type = UInt8(ascii: "6")
        case .socket: throw VaultError(.invalidArgument, "\(entry.path) is a socket, which tar cannot hold")
        }
        try header(
            name: nameField, prefix: prefixField, mode: a.permissions, uid: min(a.uid, 0o7777777),
            gid: min(a.gid, 0o7777777), size: min(size, 0o77777777777), mtime: a.modified.seconds, type: type,
            link: Array(link.prefix(100)), major: a.deviceMajor, minor: a.deviceMinor)
    }

    public func writeData(_ bytes: UnsafeRawBufferPointer) throws {
        try append(bytes)
    }

    /// Pads a file's data to the 512-byte record.
    public func endData(size: Int64) throws { try pad(size) }

    /// The two zero records that end an archive, then everything buffered.
    public func finish() throws {
        try append([UInt8](repeating: 0, count: 1024))
        try flush()
    }

    // MARK: Encoding

    private func header(
        name: [UInt8], prefix: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32, size: Int64, mtime: Int64,
        type: UInt8, link: [UInt8], major: UInt32, minor: UInt32
    ) throws {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int, width: Int) {
            for (i, b) in bytes.prefix(width).enumerated() { h[offset + i] = b }
        }
        func octal(_ value: Int64, at offset: Int, width: Int) {
            put(Array(String(max(0, value), radix: 8).leftPadded(width - 1).utf8), at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(Int64(mode & 0o7777), at: 100, width: 8)
        octal(Int64(uid), at: 108, width: 8)
        octal(Int64(gid), at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(min(max(mtime, 0), 0o77777777777), at: 136, width: 12)
        h[156] = type
        put(link, at: 157, width: 100)
        put(Array("ustar\u{0}00".utf8), at: 257, width: 8)
        octal(Int64(major), at: 329, width: 8)
        octal(Int64(minor), at: 337, width: 8)
        put(prefix, at: 345, width: 155)
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        put(Array(String(sum, radix: 8).leftPadded(6).utf8) + [0, 0x20], at: 148, width: 8)
        try append(h)
    }

    /// Splits a long name at a slash into ustar's prefix (155) and name (100), if it can.
    private static func split(_ name: [UInt8]) -> (prefix: [UInt8], name: [UInt8])? {
        for index in name.indices.reversed() where name[index] == UInt8(ascii: "/") {
            let prefix = Array(name[..<index])
            let rest = Array(name[(index + 1)...])
            if prefix.count <= 155, rest.count <= 100, !rest.isEmpty { return (prefix, rest) }
        }
        return nil
    }

    /// "LEN key=value\n", where LEN counts the whole record, itself included.
    static func record(_ key: String, _ value: [UInt8]) -> [UInt8] {
        let body = Array(" \(key)=".utf8) + value + [0x0A]
        var length = body.count + 1
        while String(length).count + body.count != length { length = String(length).count + body.count }
        return Array(String(length).utf8) + body
    }

    static func time(_ t: FileTime) -> String {
        t.nanoseconds == 0 ? "\(t.seconds)" : "\(t.seconds).\(String(t.nanoseconds).leftPadded(9))"
    }

    private func pad(_ size: Int64) throws {
        let rest = Int(size % 512)
        if rest != 0 { try append([UInt8](repeating: 0, count: 512 - rest)) }
    }

    private func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try append($0) }
    }

    private func append(_ bytes: UnsafeRawBufferPointer) throws {
        buffer.append(contentsOf: bytes)
        if buffer.count >= Self.flushSize { try flush() }
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try sink($0) }
        buffer.removeAll(keepingCapacity: true)
    }
}
