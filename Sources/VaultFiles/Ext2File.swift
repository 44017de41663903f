import VaultCore

/// A regular file of an ext2/3/4 filesystem, opened for reading. A file with an extent
/// tree has it read once, when opened: its reads then go straight to the image's bytes and
/// its seeks are a binary search, so a file in 100,000 pieces reads like one in a few. Other
/// files (block-mapped ext2/3, inline data, a tree libext2fs cannot walk, more than `ExtentMap.limit`
/// extents) are read through libext2fs, call by call.
final class Ext2File: OpenFile {
    let filesystem: Ext2Filesystem
    let source: any ByteSource
    let inode: UInt64
    let size: Int64
    /// The most extents its map may have; nil when libext2fs finds the blocks.
    let extentLimit: Int?

    init(filesystem: Ext2Filesystem, source: any ByteSource, inode: UInt64, size: Int64, extentLimit: Int?) {
        self.filesystem = filesystem
        self.source = source
        self.inode = inode
        self.size = size
        self.extentLimit = extentLimit
    }

    /// Its extent map, asked of the filesystem's maps on each call: the file holds none of
    /// its own, so the maps of open files stay within the mount's memory budget.
    var map: ExtentMap? { extentLimit.flatMap { filesystem.extentMap(inode, limit: $0) } }

    func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let map else { return try filesystem.read(inode, at: offset, into: destination) }
        guard offset >= 0, offset < size, destination.count > 0 else { return 0 }
        let count = Int(min(Int64(destination.count), size - offset))
        var done = 0
        for piece in map.pieces(at: UInt64(offset), count: count) {
            switch piece {
            case .zeros(let length):
                UnsafeMutableRawBufferPointer(rebasing: destination[done..<done + length]).initializeMemory(
                    as: UInt8.self, repeating: 0)
                done += length
            case .bytes(let at, let length):
                let target = UnsafeMutableRawBufferPointer(rebasing: destination[done..<done + length])
                let got: Int
                do { got = try Int64(exactly: at).map { try source.readFully(at: $0, into: target) } ?? 0 } catch {
                    throw VaultError(.corrupt, "cannot read inode \(inode) at \(offset): \(error)")
                }
                guard got == length else {
                    throw VaultError(
                        .corrupt, "cannot read inode \(inode) at \(offset): its blocks lie beyond the filesystem")
                }
                done += length
            }
        }
        return done
    }

    func seek(from offset: Int64, data: Bool) throws -> Int64? {
        guard let map else { return try filesystem.seek(inode, from: offset, data: data) }
        return map.seek(from: offset, data: data, size: size)
    }
}
