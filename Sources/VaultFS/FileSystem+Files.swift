import Foundation
import Glibc
import VaultCore
import VaultFiles

/// The nodes that come from the disks themselves rather than the catalog: partition images,
/// `files/` and everything inside the filesystems shown there.
extension FileSystem {
    /// A folder's entries: the tree's own, then those found on the point's disks.
    func children(of node: Node, in tree: Tree) throws -> [(name: FileName, node: Node, kind: Node.Kind?)] {
        var list = (tree.entries[node] ?? []).map { (name: FileName($0.name), node: $0.node, kind: $0.node.kind) }
        switch node {
        case .root:
            // Listed while there are restores; looked up by name always.
            if !liveRestores.current().isEmpty { list.append((FileName(Self.restoresName), .restores, .directory)) }
        case .restores, .restoreFolder:
            list += restoreChildren(of: node)
        case .point(let id) where tree.points[id]?.status == .active:
            for disk in tree.inventory.disks[id] ?? [] {
                guard let contents = contents(point: id, disk: disk.disk) else { continue }
                for number in contents.partitions.keys.sorted() {
                    list.append(
                        (
                            FileName("\(disk.disk).part\(number).img"),
                            .partitionImage(point: id, disk: disk.disk, partition: number), .file
                        ))
                }
            }
        case .files(let id):
            for disk in tree.inventory.disks[id] ?? [] {
                guard let contents = contents(point: id, disk: disk.disk) else { continue }
                for name in contents.shownVolumes {
                    let number = volumes.number(for: VolumeKey(point: id, disk: disk.disk, name: name))
                    list.append(
                        (FileName(name), .inside(volume: number, inode: contents.volumes[name]!.rootInode), .directory))
                }
            }
        case .inside(let number, let inode):
            for entry in try volume(of: node).entries(inode) {
                list.append((entry.name, .inside(volume: number, inode: entry.inode), entry.kind.map(Self.kind)))
            }
        default:
            break
        }
        return list
    }

    /// The node a name in a folder refers to, found without listing the folder again.
    func child(of parent: Node, named name: FileName, in tree: Tree) throws -> Node? {
        if let text = name.string, let node = tree.child(of: parent, named: text) { return node }
        switch parent {
        case .root where name.string == Self.restoresName:
            return .restores
        case .restores, .restoreFolder:
            return restoreChildren(of: parent).first { $0.name == name }?.node
        case .inside(let number, let inode):
            return try volume(of: parent).child(of: inode, named: name).map { .inside(volume: number, inode: $0) }
        case .point, .files:
            return try children(of: parent, in: tree).first { $0.name == name }?.node
        default:
            return nil
        }
    }

    /// A disk's partitions and filesystems; nil (logged) when the disk cannot be read.
    func contents(point: String, disk: String) -> DiskContents? {
        do { return try files.contents(point: point, disk: disk) } catch {
            logger.error("cannot look at disk \(disk) of point \(point): \(error)")
            return nil
        }
    }

    func volume(of node: Node) throws -> Volume {
        guard case .inside(let number, _) = node, let key = volumes.key(for: number) else {
            throw VaultError(.notFound, "not a file inside a point")
        }
        return try files.volume(point: key.point, disk: key.disk, name: key.name)
    }

    /// A file's attributes as its filesystem recorded them; with `files_owner=me`, owned by
    /// the mounting user instead.
    func insideAttributes(of node: Node) throws -> Attributes {
        guard case .inside(_, let number) = node else { throw VaultError(.notFound, "not a file inside a point") }
        let a = try volume(of: node).reader.attributes(number)
        func time(_ t: FileTime) -> timespec { timespec(tv_sec: Int(t.seconds), tv_nsec: Int(t.nanoseconds)) }
        return Attributes(
            inode: inodes.inode(for: node), kind: Self.kind(a.kind), mode: a.permissions, size: a.size,
            blocks: a.blocks, time: Date(timeIntervalSince1970: Double(a.modified.seconds)),
            owner: options.filesOwnedByMounter ? nil : (a.uid, a.gid), links: a.links,
            times: (time(a.accessed), time(a.modified), time(a.changed)),
            device: a.kind == .characterDevice || a.kind == .blockDevice ? (a.deviceMajor, a.deviceMinor) : nil)
    }

    static func kind(_ kind: FileKind) -> Node.Kind {
        switch kind {
        case .file: return .file
        case .directory: return .directory
        case .symlink: return .symlink
        case .characterDevice: return .characterDevice
        case .blockDevice: return .blockDevice
        case .fifo: return .fifo
        case .socket: return .socket
        }
    }

    // MARK: Extended attributes

    /// getxattr: the value, or its size when `size` is 0.
    ///
    /// The tree's own nodes (vaults, servers, points, images, JSON files) cannot hold any, so
    /// they answer ENOTSUP rather than ENODATA. `ls -l` then stops asking for ACLs and SELinux
    /// labels on this mount after its first entry, instead of three requests per entry (a
    /// listing of 10,000 points made 30,000). Files inside points answer as their image says.
    func getxattr(_ inode: UInt64, name: String, size: Int) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .refused(.notFound) }
        guard case .inside(_, let number) = node else { return .refused(.notSupported) }
        do {
            guard let value = try volume(of: node).extendedAttributes(number).first(where: { $0.name == name })?.value
            else {
                return .refused(.noAttribute)
            }
            if size == 0 { return .xattrSize(value.count) }
            return value.count > size ? .refused(.bufferTooSmall) : .data(value)
        } catch {
            logger.error("getxattr \(name): \(error)")
            return .failed(error)
        }
    }

    /// listxattr: the names, each NUL-terminated, or their length when `size` is 0.
    func listxattr(_ inode: UInt64, size: Int) -> Reply {
        let tree = tree()
        guard let node = resolve(inode, in: tree) else { return .refused(.notFound) }
        var bytes: [UInt8] = []
        if case .inside(_, let number) = node {
            do {
                for (name, _) in try volume(of: node).extendedAttributes(number) { bytes += Array(name.utf8) + [0] }
            } catch {
                logger.error("listxattr: \(error)")
                return .failed(error)
            }
        }
        if size == 0 { return .xattrSize(bytes.count) }
        return bytes.count > size ? .refused(.bufferTooSmall) : .data(bytes)
    }
}
