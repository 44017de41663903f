import Foundation

/// A Ceph RBD image named as a disk: `rbd:POOL/IMAGE`.
public struct RbdSpec: Sendable, Equatable {
    public static let prefix = "rbd:"
    public let pool: String
    public let image: String

    /// The image a disk's source names, or nil when it names a file (an absolute path).
    /// Throws when it starts with `rbd:` but names no image.
    public init?(source: String) throws {
        guard source.hasPrefix(Self.prefix) else { return nil }
        let rest = source.dropFirst(Self.prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard rest.count == 2, Self.isName(rest[0]), Self.isName(rest[1]) else {
            throw VaultError.invalid(
                "'\(source)' is not an RBD image: use rbd:POOL/IMAGE, each 1-100 letters, digits, '.', '_' and '-'")
        }
        pool = String(rest[0])
        image = String(rest[1])
    }

    /// Names Ceph takes as they are and that need no quoting anywhere vaultfs shows them.
    private static func isName(_ text: Substring) -> Bool {
        (1...100).contains(text.utf8.count) && text.first != "."
            && text.unicodeScalars.allSatisfy {
                ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)))
                    || "._-".unicodeScalars.contains($0)
            }
    }

    public var description: String { "\(Self.prefix)\(pool)/\(image)" }
}

/// How this host reaches a Ceph cluster: its configuration file and the client id it uses
/// (host configuration: `ceph-conf =` and `ceph-id =` in the server's file).
public struct CephAccess: Sendable, Equatable {
    /// The configuration file; nil for Ceph's default places (`/etc/ceph/ceph.conf`).
    public var conf: String?
    /// The client id (`backup` for `client.backup`); nil for `admin`.
    public var id: String?

    public init(conf: String? = nil, id: String? = nil) {
        self.conf = conf
        self.id = id
    }

    /// Refuses what a host file cannot hold or Ceph cannot take.
    public func check() throws {
        if let conf, !conf.hasPrefix("/") || conf.contains(where: \.isNewline) || conf.unicodeScalars.contains("\0") {
            throw VaultError.invalid("--ceph-conf must be an absolute path on one line")
        }
        if let id,
            id.isEmpty || id.utf8.count > 64
                || !id.unicodeScalars.allSatisfy({
                    $0.isASCII
                        && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0))
                })
        {
            throw VaultError.invalid(
                "--ceph-id must be 1-64 letters, digits, '.', '_' and '-' (the part after 'client.')")
        }
    }
}

/// A qemu NBD export on a unix socket named as a disk: `nbd+unix:///EXPORT?socket=PATH`.
public struct NbdSpec: Sendable, Equatable {
    public static let prefix = "nbd+unix:///"
    public let export: String
    public let socket: String

    /// The export a disk's source names, or nil when it names no NBD export. Throws when it
    /// starts with `nbd` but is not an export on a unix socket vaultfs takes.
    public init?(source: String) throws {
        guard source.hasPrefix("nbd") else { return nil }
        let bad = VaultError.invalid(
            "'\(source)' is not an NBD export vaultfs reads: use nbd+unix:///EXPORT?socket=/PATH, the export 0-100 letters, digits, '.', '_' and '-', the socket an absolute path without spaces, '&', '?' or '#'"
        )
        guard source.hasPrefix(Self.prefix), let query = source.firstIndex(of: "?") else { throw bad }
        let export = source[source.index(source.startIndex, offsetBy: Self.prefix.count)..<query]
        let parameter = source[source.index(after: query)...]
        guard parameter.hasPrefix("socket=") else { throw bad }
        let socket = parameter.dropFirst("socket=".count)
        guard export.utf8.count <= 100,
            export.unicodeScalars.allSatisfy({
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0))
            }),
            socket.hasPrefix("/"), socket.utf8.count <= 100,
            !socket.unicodeScalars.contains(where: {
                !$0.isASCII || $0.properties.isWhitespace || "&?#%\0".unicodeScalars.contains($0) || $0.value < 32
            })
        else { throw bad }
        self.export = String(export)
        self.socket = String(socket)
    }

    /// Another export of the same server.
    init(export: String, socket: String) {
        self.export = export
        self.socket = socket
    }

    public var description: String { "\(Self.prefix)\(export)?socket=\(socket)" }
}

/// How this host tracks what changed on an NBD disk: the qemu dirty bitmap the export
/// shows, and the QMP socket through which vaultctl clears it at each point (host
/// configuration: `bitmap =` and `qmp =` in the server's file).
public struct DirtyBitmap: Sendable, Equatable {
    public var name: String
    public var qmp: String

    public init(name: String, qmp: String) {
        self.name = name
        self.qmp = qmp
    }

    public func check() throws {
        guard (1...100).contains(name.utf8.count),
            name.unicodeScalars.allSatisfy({
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0))
            })
        else { throw VaultError.invalid("--bitmap must be 1-100 letters, digits, '.', '_' and '-'") }
        guard qmp.hasPrefix("/"), qmp.utf8.count <= 100, !qmp.contains(where: \.isNewline),
            !qmp.unicodeScalars.contains("\0")
        else { throw VaultError.invalid("--qmp must be the absolute path of qemu's QMP socket, on one line") }
    }
}
