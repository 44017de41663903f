import Glibc
import VaultCore

/// Why the mount refuses a request. The one place where the mount picks errno values: each
/// handler names its reason, and the bridge sends the number.
enum Refusal: Sendable {
    /// No such name or inode (any more).
    case notFound
    case notADirectory
    case isADirectory
    /// The mount is read-only, but for mkdir (backup now) and rmdir (delete) of a point.
    case readOnly
    /// A handle the kernel gave back that this mount never opened, or already closed.
    case badHandle
    case invalid
    /// SEEK_DATA or SEEK_HOLE at or past the end, or with no data after it.
    case pastEnd
    /// mkdir where a point cannot be (outside a server's folder, or in a server's old vault).
    case notPermitted
    /// A device, FIFO or socket inside a point: shown, never opened.
    case notOpenable
    /// Extended attributes of something that is not inside a point's filesystem.
    case notSupported
    case noAttribute
    /// An extended attribute or name list longer than the buffer the caller gave.
    case bufferTooSmall
    case io

    var errno: Int32 {
        switch self {
        case .notFound: return ENOENT
        case .notADirectory: return ENOTDIR
        case .isADirectory: return EISDIR
        case .readOnly: return EROFS
        case .badHandle: return EBADF
        case .invalid: return EINVAL
        case .pastEnd: return ENXIO
        case .notPermitted: return EPERM
        case .notOpenable: return EACCES
        case .notSupported: return ENOTSUP
        case .noAttribute: return ENODATA
        case .bufferTooSmall: return ERANGE
        case .io: return EIO
        }
    }
}

extension VaultError {
    /// The errno a FUSE reply returns for this error.
    var errno: Int32 {
        switch code {
        case .invalidArgument: return EINVAL
        case .notFound: return ENOENT
        case .alreadyExists: return EEXIST
        case .busy, .hasDependants: return EBUSY
        case .notEmpty: return ENOTEMPTY
        case .noSpace: return ENOSPC
        case .readOnly: return EROFS
        case .permissionDenied, .wrongKey: return EACCES
        case .diskMissing: return ENXIO
        case .noAttribute: return ENODATA
        case .notARepository, .unsupportedFormat, .corrupt, .io, .cancelled, .needsRepair, .unreachable: return EIO
        }
    }
}

/// The errno of any error a handler caught: a `VaultError`'s own, EIO for anything else.
func errnoOf(_ error: any Error) -> Int32 { (error as? VaultError)?.errno ?? EIO }
