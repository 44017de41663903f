import Foundation
import Glibc

/// A folder of the kinds of files a server's disk holds: plain and large files, a sparse
/// file, a symlink, a hard link, a FIFO, a device node, extended attributes, a POSIX ACL,
/// files owned by another user and one readable only by root, with fixed times.
public struct SourceTree {
    public let path: String

    /// A folder made elsewhere, to turn into an image.
    public init(path: String) { self.path = path }

    /// Makes the folder; `otherUID` owns `home/user/` and its files.
    public static func make(at path: String, otherUID: UInt32 = 4242) throws -> SourceTree {
        let fm = FileManager.default
        for folder in ["etc/nginx", "home/user/docs", "var/lib/data", "srv/empty"] {
            try fm.createDirectory(atPath: "\(path)/\(folder)", withIntermediateDirectories: true)
        }
        func write(_ name: String, _ bytes: [UInt8], mode: Int = 0o644) throws {
            _ = fm.createFile(atPath: "\(path)/\(name)", contents: Data(bytes))
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: "\(path)/\(name)")
        }
        try write("etc/hostname", Array("web01\n".utf8))
        try write("etc/nginx/nginx.conf", Array(String(repeating: "worker_processes auto;\n", count: 40).utf8))
        try write("etc/shadow", Array("root:$6$secret:19000::::::\n".utf8), mode: 0o600)
        try write("var/lib/data/large.bin", pseudoRandomBytes(3 << 20, seed: 77))
        try write("home/user/docs/notes.txt", Array("remember the milk\n".utf8), mode: 0o640)
        try write("home/user/private.key", pseudoRandomBytes(4096, seed: 78), mode: 0o600)
        // A sparse file: 8 MiB with data only at its start and near its end.
        let sparse = "\(path)/var/lib/data/sparse.img"
        try write("var/lib/data/sparse.img", pseudoRandomBytes(4096, seed: 79))
        try mustRun(["truncate", "-s", "8M", sparse])
        try mustRun([
            "dd", "if=/dev/urandom", "of=\(sparse)", "bs=4096", "count=1", "seek=1500", "conv=notrunc", "status=none",
        ])
        try fm.createSymbolicLink(atPath: "\(path)/etc/nginx/current", withDestinationPath: "nginx.conf")
        try fm.createSymbolicLink(
            atPath: "\(path)/var/lib/data/long-link",
            withDestinationPath: "/" + String(repeating: "long/", count: 30) + "target")
        guard link("\(path)/var/lib/data/large.bin", "\(path)/var/lib/data/large.hardlink") == 0 else {
            throw TestError.failed("link: \(String(cString: strerror(errno)))")
        }
        try mustRun(["mkfifo", "\(path)/srv/fifo"])
        try mustRun(["mknod", "\(path)/srv/null", "c", "1", "3"])
        try mustRun(["setfattr", "-n", "user.origin", "-v", "web01 backup test", "\(path)/etc/hostname"])
        try mustRun(["setfacl", "-m", "u:\(otherUID):r", "\(path)/etc/nginx/nginx.conf"])
        try mustRun(["chown", "-R", "\(otherUID):\(otherUID)", "\(path)/home/user"])
        // Fixed times, so a restored file's times compare against something known.
        try mustRun(["find", path, "-exec", "touch", "-h", "-d", "2030-01-02 03:04:05.123456789", "{}", "+"])
        return SourceTree(path: path)
    }

    /// An ext4 image of `size` holding the folder (`mkfs.ext4 -d`).
    public func ext4(at image: String, size: String) throws {
        try mustRun(
            ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", path, image, size],
            environment: ["E2FSPROGS_FAKE_TIME": "1764000000"])
    }
}

/// A disk with a partition table made by `sfdisk`, each partition optionally holding an
/// ext4 filesystem made from a folder and spliced in at the partition's offset.
public enum PartitionedDisk {
    /// `script` is sfdisk's input (`label: gpt` and one line per partition). `contents`
    /// maps partition numbers to folders to fill them from. Returns each partition's byte
    /// offset and size, by number, as sfdisk reports them.
    @discardableResult
    public static func make(
        at path: String, size: String, script: String,
        contents: [Int: String]
    ) throws -> [Int: (offset: Int64, size: Int64)] {
        try mustRun(["truncate", "-s", size, path])
        let scratch = Scratch("sfdisk")
        let input = scratch.file("script")
        try script.write(toFile: input, atomically: true, encoding: .utf8)
        let result = try runCommand(["sfdisk", "-q", path], stdinPath: input)
        guard result.status == 0 else { throw TestError.failed("sfdisk: \(result.stderr)") }
        let json = try mustRun(["sfdisk", "-J", path])
        let table = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        let partitions = (table["partitiontable"] as! [String: Any])["partitions"] as! [[String: Any]]
        var spans: [Int: (offset: Int64, size: Int64)] = [:]
        for partition in partitions {
            let node = partition["node"] as! String
            let number = Int(node.reversed().prefix { $0.isNumber }.reversed().map(String.init).joined())!
            spans[number] = (
                (partition["start"] as! NSNumber).int64Value * 512, (partition["size"] as! NSNumber).int64Value * 512
            )
        }
        for (number, folder) in contents {
            guard let span = spans[number] else { throw TestError.failed("no partition \(number) in \(path)") }
            let image = scratch.file("part\(number).img")
            try SourceTree(path: folder).ext4(at: image, size: "\(span.size / 1024)K")
            try mustRun([
                "dd", "if=\(image)", "of=\(path)", "bs=64K", "seek=\(span.offset)", "oflag=seek_bytes",
                "conv=notrunc,sparse", "status=none",
            ])
        }
        return spans
    }
}

/// A real user made with `useradd` for the test and removed (with `userdel`) when the
/// value goes away.
public final class TestUser {
    public let name: String
    public let uid: UInt32
    public let gid: UInt32

    public init() throws {
        name = "vfst\(UInt32.random(in: 10000...99999))"
        try mustRun(["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name])
        do {
            uid = UInt32(try mustRun(["id", "-u", name]).trimmingCharacters(in: .whitespacesAndNewlines))!
            gid = UInt32(try mustRun(["id", "-g", name]).trimmingCharacters(in: .whitespacesAndNewlines))!
        } catch {
            _ = try? runCommand(["userdel", name])
            throw error
        }
    }

    deinit { _ = try? runCommand(["userdel", name]) }

    /// The command line that runs `arguments` as this user (no supplementary groups).
    public func command(_ arguments: [String]) -> [String] {
        ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--"] + arguments
    }

    /// Runs a command as this user.
    @discardableResult
    public func run(_ arguments: [String], timeout: TimeInterval = 60) throws -> CommandResult {
        try runCommand(command(arguments), timeout: timeout)
    }
}
