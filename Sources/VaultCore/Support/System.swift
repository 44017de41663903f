import Foundation

/// Facts about the machine and this process the cache sizes itself by.
public enum System {
    public static let coreCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// This process's resident memory now (program, libraries and heap), from
    /// /proc/self/statm; nil where it cannot be read.
    public static func residentBytes() -> Int? {
        // A /proc file says it is empty to stat, so it is read without its size.
        guard let fd = try? Posix.open("/proc/self/statm", O_RDONLY) else { return nil }
        defer { close(fd) }
        var text = [UInt8](repeating: 0, count: 256)
        guard
            let n = try? text.withUnsafeMutableBytes({
                try Posix.pread(fd, $0.baseAddress!, $0.count, 0, path: "/proc/self/statm")
            }),
            let field = String(decoding: text[..<n], as: UTF8.self).split(separator: " ").dropFirst().first,
            let pages = Int(field)
        else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
