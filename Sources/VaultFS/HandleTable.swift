import Synchronization
import VaultCore
import VaultFiles

/// What an open file or folder of the mount holds until it is released.
enum Handle: Sendable {
    /// An open image keeps its lease: the point's data stays until it is released.
    case image(ImageReader, ReaderLease?)
    /// A partition of a disk: the slice's `offset` is where it starts in `reader`'s image.
    case partition(SliceSource, reader: ImageReader, lease: ReaderLease?)
    /// A regular file inside a filesystem, with the lease of the disk it lies on.
    case inside(any OpenFile, lease: ReaderLease?)
    /// The writable image of an instant restore, with its claim: the restore cannot be
    /// finished while it is open.
    case restore(LiveRestore, RestoreImageClaim)
    case bytes([UInt8])
    case directory([DirectoryEntry])
}

/// Open handles by the number the kernel holds for each.
final class HandleTable: Sendable {
    private let state = Mutex<(next: UInt64, open: [UInt64: Handle])>((1, [:]))

    /// Keeps `handle` and returns its number.
    func store(_ handle: Handle) -> UInt64 {
        state.withLock { state in
            let number = state.next
            state.next += 1
            state.open[number] = handle
            return number
        }
    }

    func lookup(_ number: UInt64) -> Handle? { state.withLock { $0.open[number] } }

    /// Forgets a handle the kernel released, and returns what it held.
    func remove(_ number: UInt64) -> Handle? { state.withLock { $0.open.removeValue(forKey: number) } }
}
