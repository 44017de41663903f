import VaultCore

/// Copies files and folders out of a filesystem inside a point, for `vaultctl files get`.
public enum FileRestore {
    /// Deeper folders than this are not followed: a damaged filesystem could loop.
    static let maxDepth = 4096
    static let blockSize = 1 << 20

    /// Calls `write` with each run of a regular file's bytes and its offset, in order,
    /// skipping holes when `skipHoles` (the caller then makes the file `size` long).
    public static func copy(
        _ volume: Volume, file inode: UInt64, size: Int64, skipHoles: Bool,
        write: (Int64, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let file = try volume.reader.open(inode)
        var buffer = [UInt8](repeating: 0, count: blockSize)
        var offset: Int64 = 0
        while offset < size {
            var end = size
            if skipHoles {
                guard let data = try file.seek(from: offset, data: true) else { return }
                guard data >= offset else { throw VaultError(.corrupt, "file inode \(inode) maps data backwards") }
                offset = data
                end = min(size, try file.seek(from: data, data: false) ?? size)
                guard end > offset else {
                    throw VaultError(.corrupt, "file inode \(inode) maps an empty run of data at \(offset)")
                }
            }
            while offset < end {
                let want = Int(min(Int64(blockSize), end - offset))
                let got = try buffer.withUnsafeMutableBytes {
                    try file.read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<want]))
                }
                guard got > 0 else {
                    throw VaultError(.corrupt, "file inode \(inode) ends at \(offset), before its size \(size)")
                }
                try buffer.withUnsafeBytes { try write(offset, UnsafeRawBufferPointer(rebasing: $0[..<got])) }
                offset += Int64(got)
            }
        }
    }

    /// Writes a folder and everything below it as tar entries named from `top`, each name as
    /// the bytes the disk holds. A file or folder that cannot be read is reported, not fatal:
    /// the rest is still written (a file whose bytes fail partway is padded with zeros to its
    /// size); so are entries whose names no file may have. Returns the reports.
    public static func archive(
        _ volume: Volume, folder inode: UInt64, as top: FileName, to tar: TarWriter,
        meter: ProgressMeter? = nil
    ) throws -> [String] {
        var failures: [String] = []
        var firstNames: [UInt64: FileName] = [:]
        var visiting: Set<UInt64> = []
        var archived: Set<UInt64> = []
        // The path of the entry being written: one buffer, a name added on the way down and
        // taken off on the way up. A path kept per level held every level's whole path at once,
        // which grows with the square of the depth: 4,096 folders of 255-byte names is 2 GiB.
        var path = top.bytes
        var here: FileName { FileName(path) }

        /// Writes the entry of `inode` (and a file's bytes); false when it is left out.
        func write(_ inode: UInt64, _ attributes: FileAttributes) throws -> Bool {
            var entry = TarWriter.Entry(
                path: here, attributes: attributes, linkTarget: nil, hardLinkTo: nil, xattrs: [])
            do {
                for name in try volume.reader.attributeNames(inode) {
                    entry.xattrs.append((name, try volume.reader.attribute(inode, named: name)))
                }
            } catch {
                failures.append("\(here.quoted): extended attributes: \(message(error))")
            }
            if attributes.kind == .file, attributes.links > 1 {
                if let first = firstNames[inode] { entry.hardLinkTo = first } else { firstNames[inode] = here }
            }
            if attributes.kind == .symlink {
                do { entry.linkTarget = try volume.reader.linkTarget(inode) } catch {
                    failures.append("\(here.quoted): \(message(error))")
                    return false
                }
            }
            try tar.begin(entry)
            if attributes.kind == .file, entry.hardLinkTo == nil {
                var written: Int64 = 0
                do {
                    try copy(volume, file: inode, size: attributes.size, skipHoles: false) { _, bytes in
                        try tar.writeData(bytes)
                        written += Int64(bytes.count)
                        meter?.advance(Int64(bytes.count))
                    }
                } catch {
                    failures.append(
                        "\(here.quoted): \(message(error)); its bytes from \(written) on are zeros in the archive")
                }
                let zeros = [UInt8](repeating: 0, count: blockSize)
                while written < attributes.size {
                    let count = Int(min(Int64(zeros.count), attributes.size - written))
                    try zeros.withUnsafeBytes { try tar.writeData(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
                    written += Int64(count)
                }
                try tar.endData(size: attributes.size)
            }
            return true
        }

        func add(_ inode: UInt64, depth: Int) throws {
            let attributes: FileAttributes
            do { attributes = try volume.reader.attributes(inode) } catch {
                failures.append("\(here.quoted): \(message(error))")
                return
            }
            if attributes.kind == .socket { return }
            guard try write(inode, attributes), attributes.kind == .directory else { return }
            guard depth < maxDepth, visiting.insert(inode).inserted, archived.insert(inode).inserted else {
                failures.append("\(here.quoted): the folder appears twice (damaged filesystem); not followed again")
                return
            }
            defer { visiting.remove(inode) }
            do {
                let listing = try volume.listing(inode)
                if !listing.unusable.isEmpty {
                    failures.append("\(here.quoted): \(listing.unusable.count) \(unusableEntries) left out")
                }
                for child in listing.entries {
                    let length = path.count
                    path.append(0x2F)
                    path += child.name.bytes
                    defer { path.removeSubrange(length...) }
                    try add(child.inode, depth: depth + 1)
                }
            } catch let error as VaultError where error.code == .corrupt || error.code == .notFound {
                failures.append("\(here.quoted): \(error.message)")
            }
        }

        try add(inode, depth: 0)
        try tar.finish()
        return failures
    }

    static func message(_ error: any Error) -> String { (error as? VaultError)?.message ?? "\(error)" }

    /// What entries left out of a listing are, for reports.
    public static let unusableEntries = "entries with names no file may have (holding / or NUL, or a second . or ..)"

}
