import Foundation
import Glibc

/// A host's history of one kind of job (restores, copies): one JSON line per entry in an
/// owner-only file, appended whole; past `limit` bytes the older half goes.
struct HistoryLog<Entry: Codable>: Sendable {
    let directory: String
    let path: String
    let limit: Int

    init(directory: String, file: String = "history.jsonl", limit: Int = 1 << 20) {
        self.directory = directory
        path = "\(directory)/\(file)"
        self.limit = limit
    }

    /// Adds `entry`. A history that cannot be written never fails the job it tells of: the
    /// caller gets the reason to say.
    func append(_ entry: Entry, what: String) -> String? {
        do {
            if !Posix.exists(directory) { try Posix.makeDirectories(directory, mode: 0o700) }
            try Posix.requireOwnerOnly(directory, isDirectory: true)
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = .sortedKeys
            let line = Array(try encoder.encode(entry)) + [10]
            if Posix.fileSize(path) + Int64(line.count) > limit {
                let kept = (try? Posix.readFile(path, limit: 2 * limit)) ?? []
                let half = kept.dropFirst(kept.count / 2)
                let tail = half.firstIndex(of: 10).map { half[($0 + 1)...] } ?? []
                try Posix.writeFileAtomically(path, Array(tail), mode: 0o600)
            }
            let fd = try Posix.open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, mode: 0o600)
            defer { close(fd) }
            try line.withUnsafeBytes { try Posix.writeAll(fd, $0, path: path) }
            return nil
        } catch {
            return "the \(what) history \(path) was not written: \(error)"
        }
    }

    /// The entries, oldest first; lines that cannot be read are skipped.
    func entries() throws -> [Entry] {
        guard Posix.exists(path) else { return [] }
        try Posix.requireOwnerOnly(directory, isDirectory: true)
        try Posix.requireOwnerOnly(path, isDirectory: false)
        let bytes = try Posix.readFile(path, limit: 2 * limit)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return bytes.split(separator: 10).compactMap { try? decoder.decode(Entry.self, from: Data($0)) }
    }
}

extension Posix {
    /// Refuses what is not a plain file (or folder), or what another user owns or its group
    /// or others may write: such a file could point a job at any file of this host.
    static func requireOwnerOnly(_ path: String, isDirectory: Bool, missingIsFine: Bool = false) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if missingIsFine && errno == ENOENT { return }
            throw Posix.error("cannot use", path)
        }
        guard st.st_mode & S_IFMT == (isDirectory ? S_IFDIR : S_IFREG) else {
            throw VaultError(.permissionDenied, "\(path) is not a \(isDirectory ? "folder" : "plain file")")
        }
        guard st.st_uid == geteuid(), st.st_mode & 0o077 == 0 else {
            throw VaultError(
                .permissionDenied,
                "\(path) belongs to another user or is open to others (mode \(String(st.st_mode & 0o7777, radix: 8))): it is not read; make it owner-only"
            )
        }
    }
}
