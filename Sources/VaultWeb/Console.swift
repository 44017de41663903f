import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
import VaultCore
import VaultFiles

/// Where and how `vaultctl serve` listens, checked before anything is opened.
public struct ConsoleOptions: Sendable {
    public enum Listen: Sendable, Equatable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unix(path: String)

        /// `HOST:PORT` (`127.0.0.1:8200`, `[::1]:8200`, `localhost:8200`) or `unix:PATH`.
        public static func parse(_ text: String) throws -> Listen {
            if text.hasPrefix("unix:") {
                let path = String(text.dropFirst(5))
                guard path.hasPrefix("/"), path.utf8.count < 100 else {
                    throw VaultError(
                        .invalidArgument, "bad --listen '\(text)': use unix:/ABSOLUTE/PATH (under 100 bytes)")
                }
                return .unix(path: path)
            }
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                (0...65535).contains(port)
            else {
                throw VaultError(
                    .invalidArgument, "bad --listen '\(text)': use HOST:PORT (127.0.0.1:8200) or unix:PATH")
            }
            var host = String(text[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || ".:-".contains($0) }) else {
                throw VaultError(.invalidArgument, "bad --listen '\(text)': the host is an address or a name")
            }
            return .tcp(host: host, port: port)
        }

        /// Whether only this host can reach it: a unix socket, or a loopback address.
        public var isLocal: Bool {
            switch self {
            case .unix: return true
            case .tcp(let host, _):
                let parts = host.split(separator: ".", omittingEmptySubsequences: false)
                return host == "localhost" || host == "::1"
                    || parts.count == 4 && parts[0] == "127"
                        && parts.allSatisfy { !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCIIDigit) }
            }
        }

        public var description: String {
            switch self {
            case .unix(let path): return "unix:\(path)"
            case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            }
        }
    }

    public var listen: Listen
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var tokenFile: String

    public init(listen: Listen, tlsCertificate: String?, tlsKey: String?, tokenFile: String) {
        self.listen = listen
        self.tlsCertificate = tlsCertificate
        self.tlsKey = tlsKey
        self.tokenFile = tokenFile
    }

    public var usesTLS: Bool { tlsCertificate != nil }

    /// The rules: TLS needs both files, and only a local listen goes without it.
    public func check() throws {
        guard (tlsCertificate == nil) == (tlsKey == nil) else {
            throw VaultError(.invalidArgument, "--tls-cert and --tls-key go together")
        }
        if !listen.isLocal && !usesTLS {
            throw VaultError(
                .invalidArgument,
                "refusing to listen on \(listen) without TLS: the token and every backup would cross the network in clear; give --tls-cert and --tls-key, or listen on 127.0.0.1 or a unix socket"
            )
        }
    }
}

/// The web console and its API over one repository: `vaultctl serve`.
public final class Console: Sendable {
    let repository: Repository
    let access: Access
    let options: ConsoleOptions
    let jobs = BackupJobs()
    let pages: Pages
    /// The filesystems inside points, kept open between requests (each leases its point).
    let files: PointFiles
    /// What every read of the console goes through: downloads of images and files alike, so
    /// parallel downloads share one budget.
    let cache: ChunkCache
    /// Verify, purge and retention: one at a time, each on a thread of its own, so they never
    /// hold the workers that serve pages and downloads.
    let maintenance = Mutex<String?>(nil)
    /// Catalog and store work runs here, never on the event loops that serve connections.
    let pool: NIOThreadPool

    init(repository: Repository, options: ConsoleOptions, token: String) throws {
        self.repository = repository
        self.options = options
        access = Access(token: token)
        pages = try Pages()
        cache = ChunkCache(store: repository.chunks, budget: 128 << 20)
        files = PointFiles.reading(repository, cache: cache)
        pool = NIOThreadPool(numberOfThreads: 6)
    }

    /// Whether SIGTERM or SIGINT came. The server waits for every response in flight before
    /// it stops, so the event stream and downloads look at this between pieces and end: it
    /// stops within seconds, not when the last client goes. (The requests run below the
    /// server's service, whose graceful shutdown they see.)
    static var stopping: Bool { Task.isShuttingDownGracefully }

    /// Throws once the console is stopping: what a long response checks between pieces.
    func checkRunning() throws {
        if Self.stopping { throw VaultError(.cancelled, "the console is stopping") }
    }

    /// Closes what is kept open of points that are no longer readable.
    func releaseDeletedPoints() throws {
        files.keep(points: Set(try repository.catalog.points().map(\.id)))
    }

    /// Runs `body` on the console's worker threads.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    /// Serves until SIGTERM or SIGINT. `ready` gets the lines to print once it listens: where,
    /// and how to log in.
    public static func serve(
        repository: Repository, options: ConsoleOptions, ready: @escaping @Sendable ([String]) -> Void
    ) async throws {
        try options.check()
        let (token, created) = try TokenFile.load(options.tokenFile)
        let tls = try options.tlsCertificate.map { certificate in
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(certificate).map {
                    NIOSSLCertificateSource.certificate($0)
                }
                let key = try NIOSSLPrivateKey(file: options.tlsKey ?? "", format: .pem)
                var configuration = TLSConfiguration.makeServerConfiguration(
                    certificateChain: chain, privateKey: .privateKey(key))
                configuration.minimumTLSVersion = .tlsv12
                return configuration
            } catch {
                throw VaultError(.invalidArgument, "cannot load the TLS certificate or key: \(error)")
            }
        }
        if case .unix(let path) = options.listen { try Self.checkSocketPath(path) }
        let console = try Console(repository: repository, options: options, token: token)
        console.pool.start()
        // Every minute, the filesystems of points deleted meanwhile (by anyone) are closed, and
        // their leases with them, so gc can free what they used.
        let tidying = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 60_000_000_000)
                _ = try? await console.blocking { try console.releaseDeletedPoints() }
            }
        }
        defer {
            tidying.cancel()
            console.jobs.stopAll()
        }
        let address: BindAddress
        switch options.listen {
        case .tcp(let host, let port): address = .hostname(host, port: port)
        case .unix(let path): address = .unixDomainSocket(path: path)
        }
        let listen = options.listen
        let scheme = tls == nil ? "http" : "https"
        // A connection idle for a minute between requests is closed, and at most 256 are open
        // at once: idle sockets cannot use up the descriptors the backups need.
        let http = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(60)))
        // A unix socket is made owner-only (umask), so no other user can connect even before
        // the chmod below; the umask is put back once it listens.
        let umaskBefore = Mutex<mode_t?>(nil)
        if case .unix = listen { umaskBefore.withLock { $0 = umask(0o177) } }
        var app = Application(
            router: console.router(),
            server: try tls.map { try .tls(http, tlsConfiguration: $0) } ?? http,
            configuration: .init(
                address: address, serverName: "vaultfs", availableConnectionsDelegate: MaximumAvailableConnections(256)),
            onServerRunning: { channel in
                if let mask = umaskBefore.withLock({ $0 }) { umask(mask) }
                var lines: [String] = []
                switch listen {
                case .unix(let path):
                    // Owner-only, as the token file: another user of the host cannot even connect.
                    if chmod(path, 0o600) != 0 {
                        lines.append("warning: cannot make \(path) owner-only: \(Posix.message(errno))")
                    }
                    lines.append("serving \(repository.location.name) on unix:\(path)")
                case .tcp(let host, _):
                    let port = channel.localAddress?.port ?? 0
                    let shown = host.contains(":") ? "[\(host)]" : host
                    lines.append("serving \(repository.location.name) at \(scheme)://\(shown):\(port)/")
                }
                lines.append(
                    (created ? "made a new token in " : "the token is in ")
                        + "\(options.tokenFile): log in with it, or send it as 'Authorization: Bearer TOKEN'")
                ready(lines)
            },
            logger: Self.quietLogger())
        defer { if case .unix(let path) = listen { unlink(path) } }
        do {
            try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } catch let error as IOError {
            try? await console.pool.shutdownGracefully()
            throw VaultError(.busy, "cannot listen on \(listen): \(Posix.message(error.errnoCode))")
        }
        try? await console.pool.shutdownGracefully()
    }

    /// A socket path is taken only when nothing is there, or a socket nobody listens on.
    static func checkSocketPath(_ path: String) throws {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        guard status.st_mode & S_IFMT == S_IFSOCK else {
            throw VaultError(.alreadyExists, "\(path) exists and is not a socket; refusing to replace it")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 { throw VaultError(.busy, "something already serves on \(path)") }
    }

    private static func quietLogger() -> Logger {
        var logger = Logger(label: "vaultfs.console")
        logger.logLevel = .warning
        return logger
    }
}

/// What every request carries through the console: who sent it and how it was let in.
struct WebContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The client's address, for limiting failed logins ("local" over a unix socket).
    let client: String
    /// The session a cookie names, when that is how the request was let in.
    var session: SessionInfo?

    struct SessionInfo: Sendable {
        var id: String
        var csrf: String
    }

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        client = source.channel.remoteAddress?.ipAddress ?? "local"
    }

    /// Uploads are small JSON objects and forms.
    var maxUploadSize: Int { 64 << 10 }
}
