internal import CZstd
import Synchronization

/// One zstd compression context, owned by one thread at a time. Every frame it makes
/// carries its content checksum, which decoding verifies.
final class ZstdCompressor {
    private let context: OpaquePointer

    /// The match finder's hash table at level 1, as a power of two: 2,048 entries (8 KiB)
    /// instead of the 8,192 (32 KiB) zstd picks for a 64 KiB frame and clears for every
    /// frame. Only the encoder uses it; frames decode as before. The corpus's first 840 MiB
    /// as 64 KiB frames, one core: 660 MB/s against 556-573 MB/s, 2.8% more stored (12:
    /// 623 MB/s, 1% more; 10: 693 MB/s, 5.3% more). Full backups of the corpus image, cold,
    /// five in turns on the 2-core bench machine: 1.18-1.29 s (median 1.27) and 1.73-1.88
    /// user-seconds against 1.28-1.35 s (1.30) and 1.96-2.08; the repository after v1-v3
    /// 485 MB against 472 MB.
    static let levelOneHashLog: Int32 = 11

    /// The hash table size this context was given (0: zstd's choice for each frame).
    let hashLog: Int32

    init(level: Int) {
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
        let set = level == 1 && ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_hashLog, Self.levelOneHashLog)) == 0
        hashLog = set ? Self.levelOneHashLog : 0
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `source` as independent frames of `frameSize` plain bytes into
    /// `destination`; returns each frame's length. A zstd error (no memory for its tables,
    /// say) fails this chunk's write, and with it the backup, with zstd's reason: never the
    /// process, which may be a mount serving other readers.
    func compressFrames(_ source: UnsafeRawBufferPointer, frameSize: Int, into destination: inout [UInt8]) throws
        -> [Int]
    {
        let count = (source.count + frameSize - 1) / frameSize
        let bound = count * ZSTD_compressBound(frameSize)
        if destination.count < bound { destination = [UInt8](repeating: 0, count: bound) }
        var lengths: [Int] = []
        lengths.reserveCapacity(count)
        try destination.withUnsafeMutableBytes { out in
            var written = 0
            for i in 0..<count {
                let start = i * frameSize
                let length = min(frameSize, source.count - start)
                let size = ZSTD_compress2(
                    context, out.baseAddress! + written, out.count - written,
                    source.baseAddress! + start, length)
                guard ZSTD_isError(size) == 0 else {
                    throw VaultError(.io, "zstd cannot compress a chunk: \(String(cString: ZSTD_getErrorName(size)))")
                }
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
        let size = ZSTD_decompressDCtx(
            context, destination.baseAddress, destination.count, source.baseAddress, source.count)
        idle.withLock { if $0.count < 16 { $0.append(raw) } else { ZSTD_freeDCtx(context) } }
        return ZSTD_isError(size) == 0 && size == destination.count
    }
}
