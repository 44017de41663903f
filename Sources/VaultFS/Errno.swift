import Glibc
import VaultCore

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

func errnoOf(_ error: any Error) -> Int32 { (error as? VaultError)?.errno ?? EIO }
