import Foundation
import Glibc
import VaultCore
import VaultFiles

/// `.restores/`: a folder for each instant restore this host keeps for the repository, with
/// the writable image (`<disk>.img`) that reads the point where the target is not filled yet,
/// and `status.json`.
extension FileSystem {
    static let restoresName = ".restores"

    /// Whether a restore node still names a restore served now.
    func resolveRestore(_ node: Node) -> Node? {
        switch node {
        case .restores: return node
        case .restoreFolder(let id), .restoreImage(let id), .restoreStatus(let id):
            return liveRestores.current()[id] == nil ? nil : node
        default: return nil
        }
    }

    func restoreChildren(of node: Node) -> [(name: FileName, node: Node, kind: Node.Kind?)] {
        switch node {
        case .restores:
            return liveRestores.current().keys.sorted().map { (FileName($0), .restoreFolder($0), .directory) }
        case .restoreFolder(let id):
            guard let restore = liveRestores.current()[id] else { return [] }
            return [
                (FileName("\(restore.record.disk).img"), .restoreImage(id), .file),
                (FileName("status.json"), .restoreStatus(id), .file),
            ]
        default:
            return []
        }
    }

    func restoreAttributes(of node: Node) -> Attributes? {
        let inode = inodes.inode(for: node)
        switch node {
        case .restores:
            return Attributes(inode: inode, kind: .directory, mode: 0o555, size: 4096, blocks: 8, time: Date())
        case .restoreFolder(let id):
            guard let restore = liveRestores.current()[id] else { return nil }
            return Attributes(
                inode: inode, kind: .directory, mode: 0o555, size: 4096, blocks: 8, time: restore.record.createdAt)
        case .restoreImage(let id):
            guard let restore = liveRestores.current()[id] else { return nil }
            // Writable by the mounting user; read as `image_mode=` says.
            return Attributes(
                inode: inode, kind: .file, mode: mode_t(options.imageMode) | 0o200, size: restore.size,
                blocks: (restore.size + 511) / 512, time: restore.record.createdAt)
        case .restoreStatus(let id):
            guard let restore = liveRestores.current()[id] else { return nil }
            // Its content changes with every look, so its size is given as sysfs gives one:
            // a page, which the content never exceeds; a reader gets the end where it ends.
            return Attributes(
                inode: inode, kind: .file, mode: 0o444,
                size: Int64(max(LiveRestore.statusLimit, restore.statusJSON().count)), blocks: 8, time: Date())
        default:
            return nil
        }
    }

    func openRestore(_ node: Node) -> Reply {
        switch node {
        case .restoreImage(let id):
            guard let restore = liveRestores.current()[id] else { return .refused(.notFound) }
            do {
                let claim = try RestoreImageClaim.take(id, in: restoreFolders)
                // Direct: the kernel neither caches the image (the target's own page cache does)
                // nor reads ahead, which would fill megabytes behind every small read of a guest.
                return .opened(handle: handles.store(.restore(restore, claim)), keepCache: false, directIO: true)
            } catch {
                logger.error("cannot open the image of restore \(id): \(error)")
                return .failed(error)
            }
        case .restoreStatus(let id):
            guard let restore = liveRestores.current()[id] else { return .refused(.notFound) }
            return .opened(handle: handles.store(.bytes(restore.statusJSON())), keepCache: false, directIO: true)
        default:
            return .refused(.isADirectory)
        }
    }

    func write(handle: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer) -> Reply {
        guard case .restore(let restore, _)? = handles.lookup(handle) else { return .refused(.readOnly) }
        do { return .written(try restore.write(at: offset, bytes)) } catch {
            logger.error("restore \(restore.record.id): write at offset \(offset): \(error)")
            return .failed(error)
        }
    }

    /// fsync: an instant restore's writes become durable; nothing else was written.
    func flush(handle: UInt64) -> Reply {
        guard case .restore(let restore, _)? = handles.lookup(handle) else { return .done }
        do {
            try restore.flush()
            return .done
        } catch {
            logger.error("restore \(restore.record.id): flush: \(error)")
            return .failed(error)
        }
    }

    /// setattr: only an instant restore's image takes it, and only as a no-op (its size is
    /// the disk's; times are not kept).
    func setattr(_ inode: UInt64, newSize: Int64?) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .refused(.notFound) }
        guard case .restoreImage = node, let attributes = restoreAttributes(of: node) else {
            return .refused(.readOnly)
        }
        if let newSize, newSize != attributes.size { return .refused(.notPermitted) }
        return .attributes(attributes, timeout: Self.shortTimeout)
    }

    func fallocate(handle: UInt64) -> Reply {
        guard case .restore? = handles.lookup(handle) else { return .refused(.readOnly) }
        return .refused(.notSupported)
    }
}
