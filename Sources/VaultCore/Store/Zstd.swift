internal import CZstd
import Synchronization

/// One zstd compression context, owned by one thread at a time. Every frame it makes
/// carries its content checksum, which decoding verifies.
final class ZstdCompressor {
    private let context: OpaquePointer

    init(level: Int) {
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `source` as independent frames of `frameSize` plain bytes into
    /// `destination`; returns each frame's length.
    func compressFrames(_ source: UnsafeRawBufferPointer, frameSize: Int, into destination: inout [UInt8]) -> [Int] {
        let count = (source.count + frameSize - 1) / frameSize
        let bound = count * ZSTD_compressBound(frameSize)
        if destination.count < bound { destination = [UInt8](repeating: 0, count: bound) }
        var lengths: [Int] = []
        lengths.reserveCapacity(count)
        destination.withUnsafeMutableBytes { out in
            var written = 0
            for i in 0..<count {
                let start = i * frameSize
                let length = min(frameSize, source.count - start)
                let size = ZSTD_compress2(context, out.baseAddress! + written, out.count - written,
                                          source.baseAddress! + start, length)
                // A context that cannot compress 64 KiB into its own bound is broken memory;
                // nothing sensible can be stored.
                precondition(ZSTD_isError(size) == 0, "zstd failed: \(String(cString: ZSTD_getErrorName(size)))")
                lengths.append(size)
                written += size
            }
        }
        return lengths
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
