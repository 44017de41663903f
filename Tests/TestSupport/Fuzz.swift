import Foundation
import Glibc

// MARK: - The run

/// The fuzzer's knobs, read from the environment so a long run or a replay needs no edit.
public enum FuzzRun {
    private static let environment = ProcessInfo.processInfo.environment

    public static let seed: UInt64 =
        environment["VAULTFS_FUZZ_SEED"].flatMap { text in
            text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        } ?? 0x5EED_F022_DEC0_DE01

    /// Peak memory a whole fuzz loop may add: far above what any input here needs, far below
    /// what a size read from a damaged file would ask for.
    public static let memoryAllowance = 256 << 20

    /// The iterations of a test given `tenths` of the total, or only `VAULTFS_FUZZ_ONLY`.
    public static func iterations(tenths: Int) -> [Int] {
        if let only = environment["VAULTFS_FUZZ_ONLY"].flatMap({ Int($0) }) { return [only] }
        let total = environment["VAULTFS_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 10_000
        return Array(0..<max(1, total * tenths / 10))
    }

    /// The generator of one iteration: the seed and the iteration number are all it depends on.
    public static func random(_ iteration: Int) -> FuzzRandom {
        FuzzRandom(seed: seed ^ UInt64(iteration) &* 0x9E37_79B9_7F4A_7C15)
    }
}

/// xorshift64 behind a splitmix64 seeding step, so nearby seeds still give unrelated streams.
public struct FuzzRandom {
    private var state: UInt64

    public init(seed: UInt64) {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        state = (z ^ (z >> 31)) | 1
    }

    public mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    /// A number in 0..<n (n > 0).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    public mutating func pick<T>(_ options: [T]) -> T { options[below(options.count)] }
    public mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

/// Peak resident memory of this process so far, in bytes.
public func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

// MARK: - Traps

/// What the fuzzer is trying now, written to stderr by a signal handler if a decoder traps:
/// a trap ends the process before any test failure is reported, so without this a crash
/// would not name its seed, iteration and mutations. The handler then puts back the previous
/// one (the Swift backtracer, or the default) and returns, so the trap repeats under it.
public enum Breadcrumb {
    private static let capacity = 8192
    nonisolated(unsafe) static let text: UnsafeMutablePointer<CChar> = {
        let text = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
        text[0] = 0
        return text
    }()
    nonisolated(unsafe) static let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 65)
    private static let signals = [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT]

    public static func install() {
        _ = text
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                _ = Glibc.write(2, Breadcrumb.text, strlen(Breadcrumb.text))
                _ = sigaction(signal, Breadcrumb.previous + Int(signal), nil)
            }
            sigaction(signal, &action, previous + Int(signal))
        }
    }

    public static func remove() {
        text[0] = 0
        for signal in signals { sigaction(signal, previous + Int(signal), nil) }
    }

    public static func set(_ description: String) {
        let line = Array("\na fuzz test trapped on \(description)\n".utf8.prefix(capacity - 1))
        line.withUnsafeBytes { UnsafeMutableRawPointer(text).copyMemory(from: $0.baseAddress!, byteCount: line.count) }
        text[line.count] = 0
    }
}
