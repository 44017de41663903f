import Glibc

extension Repository {
    /// Writes a point's disk, rebuilt from its chain, to `fd`. A regular file gets holes
    /// where the disk was zero; a pipe or device gets every byte.
    public func export(point reference: String, disk: String?, to fd: Int32, path: String,
                       cache: ChunkCache? = nil) throws -> FlatImage {
        let point = try catalog.point(matching: reference)
        guard point.status == .active else {
            throw VaultError.invalid("point \(point.name) is \(point.status.rawValue); only active points can be exported")
        }
        let disks = try catalog.pointDisks(point.id).map(\.disk)
        let name: String
        if let disk {
            guard disks.contains(disk) else {
                throw VaultError.notFound("point \(point.name) has no disk '\(disk)' (it has: \(disks.joined(separator: ", ")))")
            }
            name = disk
        } else {
            guard disks.count == 1 else { throw VaultError.invalid("point \(point.name) has disks \(disks.joined(separator: ", ")); choose one with --disk") }
            name = disks[0]
        }
        let image = try flatten(point: point.id, disk: name)
        let reader = ImageReader(image: image, cache: cache ?? ChunkCache(store: chunks, budget: 64 << 20), readAhead: 0)
        var st = stat()
        let seekable = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        var buffer = [UInt8](repeating: 0, count: image.chunkSize)
        for position in image.refs.indices {
            let offset = Int64(position) * Int64(image.chunkSize)
            let length = image.length(of: position)
            if seekable && image.refs[position] == .zero { continue }
            try buffer.withUnsafeMutableBytes { raw in
                let slice = UnsafeMutableRawBufferPointer(rebasing: raw[0..<length])
                _ = try reader.read(at: offset, into: slice)
                if seekable {
                    try Posix.pwriteAll(fd, UnsafeRawBufferPointer(slice), offset, path: path)
                } else {
                    try Posix.writeAll(fd, UnsafeRawBufferPointer(slice), path: path)
                }
            }
        }
        if seekable && ftruncate(fd, off_t(image.size)) != 0 { throw Posix.error("cannot size", path) }
        return image
    }
}
