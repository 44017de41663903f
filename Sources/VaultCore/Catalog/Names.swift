import Foundation

/// The naming rules of seed 004 and the ones derived from them.
public enum Names {
    static let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

    static func onlyAllowed(_ text: String) -> Bool { text.allSatisfy { allowed.contains($0) } }

    /// A point name: 1-255 letters, digits, `_` and `-`.
    public static func validatePointName(_ name: String) throws {
        guard (1...255).contains(name.count), onlyAllowed(name) else {
            throw VaultError.invalid("bad point name '\(name)': use 1-255 letters, digits, '_' and '-'")
        }
        guard name != "latest" else {
            throw VaultError.invalid("the point name 'latest' is reserved: it is the link to a server's newest point")
        }
    }

    /// Vault and server names follow the point name rules, and may not start with `.` anyway.
    public static func validateVaultOrServer(_ name: String, what: String) throws {
        guard (1...255).contains(name.count), onlyAllowed(name) else {
            throw VaultError.invalid("bad \(what) name '\(name)': use 1-255 letters, digits, '_' and '-'")
        }
    }

    public static func validateDisk(_ name: String) throws {
        guard (1...64).contains(name.count), onlyAllowed(name) else {
            throw VaultError.invalid("bad disk name '\(name)': use 1-64 letters, digits, '_' and '-'")
        }
    }

    /// The most disks a server may have.
    public static let maxDisks = 256

    /// A server's disks as `server add` takes them and a server manifest may hold them: 1 to
    /// `maxDisks`, each name once, each path absolute, without NUL and at most 4096 bytes.
    public static func validateDisks(_ disks: [(name: String, path: String)], server: String) throws {
        guard !disks.isEmpty else { throw VaultError.invalid("server '\(server)' needs at least one --disk NAME=PATH") }
        guard disks.count <= maxDisks else {
            throw VaultError.invalid("server '\(server)' has \(disks.count) disks; at most \(maxDisks)")
        }
        var seen = Set<String>()
        for disk in disks {
            try validateDisk(disk.name)
            let isImage: Bool
            do {
                isImage = try RbdSpec(source: disk.path) != nil || NbdSpec(source: disk.path) != nil
            } catch let error as VaultError {
                throw VaultError.invalid("disk '\(disk.name)': \(error.message)")
            }
            guard disk.path.hasPrefix("/") || isImage else {
                throw VaultError.invalid(
                    "disk '\(disk.name)': path '\(disk.path)' must be absolute (a file or device), rbd:POOL/IMAGE or nbd+unix:///EXPORT?socket=PATH"
                )
            }
            guard !disk.path.utf8.contains(0), disk.path.utf8.count <= 4096 else {
                throw VaultError.invalid("disk '\(disk.name)': a path holds no NUL and at most 4096 bytes")
            }
            guard seen.insert(disk.name).inserted else {
                throw VaultError.invalid("disk '\(disk.name)' is given twice")
            }
        }
    }

    public static func validateDescription(_ text: String) throws {
        guard text.count <= 255 else {
            throw VaultError.invalid("description is \(text.count) characters; at most 255")
        }
    }

    /// Parses and checks `KEY=VALUE` tags: at most 10, unique keys of 1-36 and values of 0-43
    /// letters, digits, `_` and `-`.
    public static func parseTags(_ texts: [String]) throws -> [(key: String, value: String)] {
        guard texts.count <= 10 else { throw VaultError.invalid("\(texts.count) tags given; a point has at most 10") }
        var keys = Set<String>()
        return try texts.map { text in
            guard let eq = text.firstIndex(of: "=") else {
                throw VaultError.invalid("bad tag '\(text)': use KEY=VALUE")
            }
            let key = String(text[..<eq])
            let value = String(text[text.index(after: eq)...])
            guard (1...36).contains(key.count), onlyAllowed(key) else {
                throw VaultError.invalid("bad tag key '\(key)': use 1-36 letters, digits, '_' and '-'")
            }
            guard value.count <= 43, onlyAllowed(value) else {
                throw VaultError.invalid("bad tag value '\(value)': use 0-43 letters, digits, '_' and '-'")
            }
            guard keys.insert(key).inserted else { throw VaultError.invalid("tag key '\(key)' is given twice") }
            return (key, value)
        }
    }

    /// The default backup-now name: `manualbk_` and 4 hex digits.
    public static func defaultManualName() -> String {
        "manualbk_" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }

    /// Names for a backup of several servers at once: `NAME-0001`, `NAME-0002`, ... in the
    /// order given; a single server keeps `NAME` as it is.
    public static func namesForServers(base: String, count: Int) throws -> [String] {
        let names = count == 1 ? [base] : (1...count).map { base + String(format: "-%04d", $0) }
        for name in names { try validatePointName(name) }
        return names
    }
}
