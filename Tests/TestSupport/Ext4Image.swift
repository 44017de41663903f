import Foundation

/// Real ext4 disk images made with `mkfs.ext4 -d` and changed with `debugfs`, without
/// mounting anything.
public struct Ext4Image {
    public let path: String

    /// Makes an ext4 image of `size` (e.g. "48M") holding `files` (path -> bytes).
    public static func make(at path: String, size: String, files: [String: [UInt8]]) throws -> Ext4Image {
        let source = Scratch("ext4src")
        for (name, bytes) in files {
            let file = "\(source.path)/\(name)"
            try FileManager.default.createDirectory(
                atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: file, contents: Data(bytes)) else {
                throw TestError.failed("cannot create \(file)")
            }
        }
        try mustRun(
            ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", source.path, path, size],
            environment: ["E2FSPROGS_FAKE_TIME": "1764000000"])
        return Ext4Image(path: path)
    }

    /// Writes a file into the filesystem, as a day of changes on a server would.
    public func write(_ name: String, _ bytes: [UInt8]) throws {
        let source = Scratch("ext4file")
        let file = source.file("data")
        guard FileManager.default.createFile(atPath: file, contents: Data(bytes)) else {
            throw TestError.failed("cannot create \(file)")
        }
        _ = try? mustRun(["debugfs", "-w", "-R", "rm /\(name)", path])
        try mustRun(["debugfs", "-w", "-R", "write \(file) /\(name)", path])
    }

    /// Runs `e2fsck -fn` on an image (or any path showing one) and throws on problems.
    public static func check(_ path: String) throws {
        try mustRun(["e2fsck", "-fn", path], timeout: 120)
    }

    /// Saves the image as it is now, keeping holes.
    public func snapshot(to copy: String) throws {
        try mustRun(["cp", "--sparse=always", path, copy])
    }
}
