import Glibc
import VaultCore

/// Bytes a disk, a partition or a filesystem is read from: a point's image through the chunk
/// cache, a window onto another source, or a plain file.
public protocol ByteSource: Sendable {
    var size: Int64 { get }
    /// Copies up to `destination.count` bytes at `offset`; returns how many (0 at the end).
    func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int
}

extension ByteSource {
    /// Exactly `count` bytes at `offset`, or an error naming the range when the source is
    /// shorter.
    public func bytes(at offset: Int64, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset <= size, Int64(count) <= size - offset else {
            throw VaultError(
                .corrupt, "bytes \(offset)-\(offset + Int64(count) - 1) lie beyond the end (\(size) bytes)")
        }
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = try readFully(at: offset, into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Fills `destination` unless the end comes first; returns how many bytes it holds.
    public func readFully(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        var done = 0
        while done < destination.count {
            let got = try read(
                at: offset + Int64(done), into: UnsafeMutableRawBufferPointer(rebasing: destination[done...]))
            if got == 0 { break }
            done += got
        }
        return done
    }
}

extension ImageReader: ByteSource {
    public var size: Int64 { image.size }
}

/// `length` bytes of `base` from `offset`: a partition of a disk.
public struct SliceSource: ByteSource {
    public let base: any ByteSource
    public let offset: Int64
    public let size: Int64

    public init(_ base: any ByteSource, offset: Int64, length: Int64) {
        self.base = base
        self.offset = offset
        size = max(0, min(length, base.size - offset))
    }

    public func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0, offset < size else { return 0 }
        let count = Int(min(Int64(destination.count), size - offset))
        return try base.read(
            at: self.offset + offset, into: UnsafeMutableRawBufferPointer(rebasing: destination[..<count]))
    }
}

/// A plain file or block device, read with pread; the descriptor closes with the value.
public final class FileSource: ByteSource {
    private let fd: Int32
    private let path: String
    public let size: Int64

    public init(path: String) throws {
        fd = try Posix.open(path, O_RDONLY)
        self.path = path
        size = max(0, Int64(lseek(fd, 0, SEEK_END)))
    }

    deinit { close(fd) }

    public func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let base = destination.baseAddress else { return 0 }
        return try Posix.pread(fd, base, destination.count, offset, path: path)
    }
}

/// Bytes held in memory: for tests and the fuzzer.
public struct MemorySource: ByteSource {
    public let bytes: [UInt8]
    public var size: Int64 { Int64(bytes.count) }

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public func read(at offset: Int64, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset >= 0, offset < size else { return 0 }
        let count = min(destination.count, bytes.count - Int(offset))
        bytes.withUnsafeBytes {
            destination.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: count)
        }
        return count
    }
}
