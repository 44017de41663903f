import Glibc

extension Repository {
    /// The active point and the disk an export of `reference` would write; `disk` may be
    /// nil when the point has one disk.
    /// The point a reference names, with its disks, when it can be read (it is active).
    public func readablePoint(_ reference: String) throws -> (point: Point, disks: [String]) {
        let point = try catalog.point(matching: reference)
        guard point.status == .active else {
            throw VaultError.invalid(
                "point \(point.name) is \(PointView.statusText(point.status)); only active points can be read")
        }
        return (point, try catalog.pointDisks(point.id).map(\.disk))
    }

    public func exportSource(point reference: String, disk: String?) throws -> (point: Point, disk: String) {
        let (point, disks) = try readablePoint(reference)
        if let disk {
            guard disks.contains(disk) else {
                throw VaultError.notFound(
                    "point \(point.name) has no disk '\(disk)' (it has: \(disks.joined(separator: ", ")))")
            }
            return (point, disk)
        }
        guard disks.count == 1 else {
            throw VaultError.invalid(
                "point \(point.name) has disks \(disks.joined(separator: ", ")); choose one with --disk")
        }
        return (point, disks[0])
    }

    /// Writes a point's disk, rebuilt from its chain, to `target`. A new file gets holes
    /// where the disk was zero; a pipe or device gets every byte. The point is leased while
    /// it is read, so retention or purge meanwhile cannot take its chunks away.
    public func export(
        point: Point, disk: String, to target: ExportTarget, cache: ChunkCache? = nil,
        progress: @escaping @Sendable (BackupProgress) -> Void = { _ in }
    ) throws -> FlatImage {
        let (image, lease) = try openImage(point: point.id, disk: disk)
        defer { _ = lease }
        let reader = ImageReader(
            image: image, cache: cache ?? ChunkCache(store: chunks, budget: 64 << 20), readAhead: 0)
        var buffer = [UInt8](repeating: 0, count: image.chunkSize)
        let meter = ProgressMeter(label: "\(point.serverName)/\(point.name) disk \(disk)", report: progress)
        meter.addTotal(image.size)
        defer { meter.finish() }
        for position in image.refs.indices {
            let offset = Int64(position) * Int64(image.chunkSize)
            let length = image.length(of: position)
            meter.advance(Int64(length))
            if target.isFile && image.refs[position] == .zero { continue }
            try buffer.withUnsafeMutableBytes { raw in
                let slice = UnsafeMutableRawBufferPointer(rebasing: raw[0..<length])
                _ = try reader.read(at: offset, into: slice)
                if target.isFile {
                    try Posix.pwriteAll(target.fd, UnsafeRawBufferPointer(slice), offset, path: target.name)
                } else {
                    try Posix.writeAll(target.fd, UnsafeRawBufferPointer(slice), path: target.name)
                }
            }
        }
        if target.isFile && ftruncate(target.fd, off_t(image.size)) != 0 {
            throw Posix.error("cannot size", target.name)
        }
        return image
    }
}
