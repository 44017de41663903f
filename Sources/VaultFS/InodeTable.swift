import Synchronization

/// Stable inode numbers for nodes. A node keeps its number for the life of the mount, so the
/// kernel's cached entries stay valid across catalog refreshes. Nodes inside filesystems are
/// numbered by arithmetic instead (top bit, volume, inode), so browsing a large tree does
/// not grow the table and hard links share one number. Bits 59–62 stay clear: a mount of
/// every location puts the location there (`LocationsRoot`).
final class InodeTable: Sendable {
    static let rootInode: UInt64 = 1
    static let insideBit: UInt64 = 1 << 63
    static let inodeBits: UInt64 = 40

    private struct State {
        var numbers: [Node: UInt64] = [.root: InodeTable.rootInode]
        var nodes: [UInt64: Node] = [InodeTable.rootInode: .root]
        var next: UInt64 = 2
    }

    private let state = Mutex(State())

    func inode(for node: Node) -> UInt64 {
        if case .inside(let volume, let inode) = node, inode < 1 << Self.inodeBits, volume < 1 << 19 {
            return Self.insideBit | UInt64(volume) << Self.inodeBits | inode
        }
        return state.withLock { state in
            if let number = state.numbers[node] { return number }
            let number = state.next
            state.next += 1
            state.numbers[node] = number
            state.nodes[number] = node
            return number
        }
    }

    func node(for inode: UInt64) -> Node? {
        if inode & Self.insideBit != 0 {
            let low = inode & ~Self.insideBit
            return .inside(volume: UInt32(low >> Self.inodeBits), inode: low & (1 << Self.inodeBits - 1))
        }
        return state.withLock { $0.nodes[inode] }
    }
}

/// A filesystem shown under `files/`: the point, the disk, and the volume's name there.
struct VolumeKey: Hashable, Sendable {
    var point: String
    var disk: String
    var name: String
}

/// Small numbers for volumes, which inode numbers of nodes inside them carry. A volume keeps
/// its number for the life of the mount.
final class VolumeTable: Sendable {
    private let state = Mutex<(keys: [VolumeKey], numbers: [VolumeKey: UInt32])>(([], [:]))

    func number(for key: VolumeKey) -> UInt32 {
        state.withLock { state in
            if let number = state.numbers[key] { return number }
            let number = UInt32(state.keys.count)
            state.keys.append(key)
            state.numbers[key] = number
            return number
        }
    }

    func key(for number: UInt32) -> VolumeKey? {
        state.withLock { Int(number) < $0.keys.count ? $0.keys[Int(number)] : nil }
    }
}
