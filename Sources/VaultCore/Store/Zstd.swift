internal import CZstd
import Synchronization

/// One zstd compression context, owned by one thread at a time.
final class ZstdCompressor {
    private let context: OpaquePointer
    private let level: Int32

    init(level: Int) {
        context = ZSTD_createCCtx()
        self.level = Int32(level)
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `source` into `destination`; returns nil when the result would not be
    /// smaller than the input, so the caller keeps the raw bytes.
    func compress(_ source: UnsafeRawBufferPointer, into destination: inout [UInt8]) -> Int? {
        let bound = ZSTD_compressBound(source.count)
        if destination.count < bound { destination = [UInt8](repeating: 0, count: bound) }
        let size = destination.withUnsafeMutableBytes {
            ZSTD_compressCCtx(context, $0.baseAddress, $0.count, source.baseAddress, source.count, level)
        }
        if ZSTD_isError(size) != 0 || size >= source.count { return nil }
        return size
    }
}

/// Decompresses zstd frames, keeping a few contexts for reuse across threads.
final class ZstdDecompressor: Sendable {
    /// Pointers to idle ZSTD_DCtx values; each is used by one thread between take and put.
    private let idle = Mutex<[UInt]>([])

    deinit {
        for raw in idle.withLock({ $0 }) { ZSTD_freeDCtx(OpaquePointer(bitPattern: raw)) }
    }

    /// Decodes `source` into exactly `destination.count` bytes, or returns false.
    func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        let raw = idle.withLock { $0.popLast() } ?? UInt(bitPattern: ZSTD_createDCtx())
        let context = OpaquePointer(bitPattern: raw)
        let size = ZSTD_decompressDCtx(context, destination.baseAddress, destination.count, source.baseAddress, source.count)
        idle.withLock { if $0.count < 16 { $0.append(raw) } else { ZSTD_freeDCtx(context) } }
        return ZSTD_isError(size) == 0 && size == destination.count
    }
}
