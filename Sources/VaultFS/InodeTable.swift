import Synchronization

/// Stable inode numbers for nodes. A node keeps its number for the life of the mount, so the
/// kernel's cached entries stay valid across catalog refreshes.
final class InodeTable: Sendable {
    static let rootInode: UInt64 = 1

    private struct State {
        var numbers: [Node: UInt64] = [.root: InodeTable.rootInode]
        var nodes: [UInt64: Node] = [InodeTable.rootInode: .root]
        var next: UInt64 = 2
    }

    private let state = Mutex(State())

    func inode(for node: Node) -> UInt64 {
        state.withLock { state in
            if let number = state.numbers[node] { return number }
            let number = state.next
            state.next += 1
            state.numbers[node] = number
            state.nodes[number] = node
            return number
        }
    }

    func node(for inode: UInt64) -> Node? { state.withLock { $0.nodes[inode] } }
}
