import Foundation

/// What is mounted, as /proc/self/mountinfo says.
public enum MountTable {
    /// One line of /proc/self/mountinfo.
    public struct Entry: Equatable, Sendable {
        /// "major:minor", also the name of the mount's bdi in /sys/class/bdi.
        public var device: String
        /// Where it is mounted.
        public var target: String
        public var source: String
        public var type: String

        public init(device: String, target: String, source: String, type: String) {
            self.device = device
            self.target = target
            self.source = source
            self.type = type
        }
    }

    /// Every mount this process sees, oldest first.
    public static func current() -> [Entry] {
        guard let bytes = Posix.readKernelFile("/proc/self/mountinfo", limit: 16 << 20) else { return [] }
        return entries(in: String(decoding: bytes, as: UTF8.self))
    }

    /// The mounts at the folder `target` (absolute, links resolved), oldest first: the last is
    /// the one on top.
    public static func current(at target: String) -> [Entry] { current().filter { $0.target == target } }

    /// The lines of `mountinfo` (as /proc/self/mountinfo gives it).
    public static func entries(in mountinfo: String) -> [Entry] {
        mountinfo.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return Entry(
                device: String(fields[2]), target: unescaped(fields[4]), source: unescaped(fields[dash + 2]),
                type: unescaped(fields[dash + 1]))
        }
    }

    /// A mountinfo field as it was: the kernel writes a space, tab, newline and backslash
    /// in one as \040, \011, \012 and \134 (a backslash and three octal digits).
    public static func unescaped(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        let zero = UInt8(ascii: "0")
        let isOctal = { (byte: UInt8) in byte >= zero && byte <= UInt8(ascii: "7") }
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\"), i + 3 < raw.count, raw[i + 1] <= UInt8(ascii: "3"),
                raw[(i + 1)...(i + 3)].allSatisfy(isOctal)
            {
                bytes.append((raw[i + 1] - zero) << 6 | (raw[i + 2] - zero) << 3 | (raw[i + 3] - zero))
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
