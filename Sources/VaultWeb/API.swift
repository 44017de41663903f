import Foundation
import Hummingbird
import NIOCore
import VaultCore
import VaultFiles

/// The JSON API under /api/v1, described in docs/openapi.json: the same objects as the
/// commands' `--json`.
extension Console {
    func router() -> Router<WebContext> {
        let router = Router(context: WebContext.self)
        let routes = RouteTable()
        router.add(middleware: Guard(console: self, routes: routes))
        addAPI(to: router, routes: routes)
        addPages(to: router, routes: routes)
        return router
    }

    private func addAPI(to router: Router<WebContext>, routes: RouteTable) {
        let api = Routes(group: router.group("/api/v1"), prefix: "/api/v1", table: routes)
        api.get("vaults") { request, _ in
            try Query.refuseFields(request)
            return json(try await self.blocking { try self.vaultViews() })
        }
        api.get("vaults/:vault") { request, context in
            try Query.refuseFields(request)
            let name = try Self.parameter(context, "vault")
            return json(try await self.blocking { try self.vaultView(name) })
        }
        api.get("servers") { request, _ in
            try Query.refuseFields(request)
            return json(try await self.blocking { try self.serverViews() })
        }
        api.get("servers/:server") { request, context in
            try Query.refuseFields(request)
            let name = try Self.parameter(context, "server")
            return json(try await self.blocking { try self.serverView(name) })
        }
        api.get("points") { request, _ in
            let query = try PointQuery(fields: try Query.fields(request))
            return json(try await self.blocking { try self.repository.page(query) })
        }
        api.get("history") { request, _ in
            let query = try PointQuery(fields: try Query.fields(request))
            return json(try await self.blocking { try self.repository.page(query, history: true) })
        }
        api.get("points/:point") { request, context in
            try Query.refuseFields(request)
            let reference = try Self.parameter(context, "point")
            return json(try await self.blocking { try self.repository.view(of: try self.point(reference)) })
        }
        api.get("points/:point/chain") { request, context in
            try Query.refuseFields(request)
            let reference = try Self.parameter(context, "point")
            return json(
                try await self.blocking {
                    try self.repository.views(of: try self.repository.chain(of: try self.point(reference)))
                })
        }
        api.get("points/:point/volumes") { request, context in
            try Query.refuseFields(request)
            let reference = try Self.parameter(context, "point")
            return json(try await self.blocking { try self.volumes(of: reference) })
        }
        api.get("points/:point/files/:volume") { request, context in
            let (path, offset, limit) = try Query.listingPage(request)
            let reference = try Self.parameter(context, "point")
            let volume = try Self.parameter(context, "volume")
            return json(
                try await self.blocking {
                    try self.listing(point: reference, volume: volume, path: path, offset: offset, limit: limit)
                })
        }
        api.get("points/:point/files/:volume/content") { request, context in
            let path = try Query.path(request)
            return try await self.fileDownload(
                point: try Self.parameter(context, "point"), volume: try Self.parameter(context, "volume"),
                path: path, range: request.headers[.range])
        }
        api.get("points/:point/disks/:disk/image") { request, context in
            try Query.refuseFields(request)
            return try await self.imageDownload(
                point: try Self.parameter(context, "point"), disk: try Self.parameter(context, "disk"),
                range: request.headers[.range])
        }
        api.get("jobs") { request, _ in
            try Query.refuseFields(request)
            return json(try await self.blocking { try self.runningJobs() })
        }
        api.get("jobs/events") { request, _ in
            try Query.refuseFields(request)
            return self.jobEvents()
        }
        api.post("servers/:server/backup") { request, context in
            let server = try Self.parameter(context, "server")
            let body = try await Self.decode(BackupRequest.self, request, context)
            return json(try await self.blocking { try self.backupNow(server: server, body) }, status: .accepted)
        }
        api.post("points/:point/delete") { request, context in
            let reference = try Self.parameter(context, "point")
            try await Self.refuseBody(request, context)
            return json(try await self.blocking { try self.delete(reference) })
        }
        api.post("points/:point/undelete") { request, context in
            let reference = try Self.parameter(context, "point")
            try await Self.refuseBody(request, context)
            return json(try await self.blocking { try self.undelete(reference) })
        }
        api.post("purge") { request, context in
            let body = try await Self.decode(PurgeRequest.self, request, context)
            return json(try await self.maintain("a purge") { try self.purge(body) })
        }
        api.post("vaults/:vault/retention") { request, context in
            let vault = try Self.parameter(context, "vault")
            let body = try await Self.decode(RetentionRequest.self, request, context)
            return json(
                try await self.maintain("retention") {
                    try self.applyRetention(vault: vault, dryRun: body.dryRun ?? false)
                })
        }
        addRestores(to: api)
        api.post("verify") { request, context in
            let body = try await Self.decode(VerifyRequest.self, request, context)
            return json(try await self.maintain("a verify") { try self.verify(server: body.server) })
        }
    }

    /// A JSON body as `T`; an empty body is `{}`. Anything else is refused with a line.
    static func decode<T: RequestFields>(_ type: T.Type, _ request: Request, _ context: WebContext) async throws -> T {
        var request = request
        let buffer = try await request.collectBody(upTo: context.maxUploadSize)
        let bytes = buffer.readableBytes == 0 ? Array("{}".utf8) : Array(buffer: buffer)
        do {
            let keys = try JSONDecoder().decode([String: AnyField].self, from: Data(bytes)).keys
            if let unknown = keys.sorted().first(where: { !T.fields.contains($0) }) {
                throw VaultError(
                    .invalidArgument,
                    T.fields.isEmpty
                        ? "unknown field '\(unknown)': this call takes no request body"
                        : "unknown field '\(unknown)': this call takes \(T.fields.joined(separator: ", "))")
            }
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as VaultError {
            throw error
        } catch let error as DecodingError {
            throw WebError(.badRequest, "the request body is not what this call takes: \(Self.describe(error))")
        } catch {
            throw WebError(.badRequest, "the request body is not JSON")
        }
    }

    /// Calls that take no body refuse one (an empty JSON object aside), so a client's
    /// mistaken fields are not ignored.
    static func refuseBody(_ request: Request, _ context: WebContext) async throws {
        try Query.refuseFields(request)
        _ = try await decode(NoFields.self, request, context)
    }

    /// A path parameter, percent-decoded (`v%31` is `v1`); bytes that are not UTF-8 are refused.
    static func parameter(_ context: WebContext, _ name: String) throws -> String {
        let raw = try context.parameters.require(name)
        guard let value = Query.decode(Substring(raw), plusIsSpace: false) else {
            throw WebError(.badRequest, "the \(name) in the path is not valid percent-encoded UTF-8")
        }
        return value
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        case .keyNotFound(let key, _): return "\(key.stringValue) is missing"
        @unknown default: return "\(error)"
        }
    }
}

// MARK: - What the calls do

/// A JSON request body: the fields a call takes. A field it does not take is refused before
/// the body is decoded: a misspelt `dryRun` must not delete.
protocol RequestFields: Decodable {
    static var fields: [String] { get }
}

struct BackupRequest: RequestFields {
    var name: String?
    var description: String?
    var tags: [String: String]?
    static let fields = ["name", "description", "tags"]
}

/// The body of a call that takes none: nothing, or `{}`.
struct NoFields: RequestFields {
    static let fields: [String] = []
}

struct PurgeRequest: RequestFields {
    var olderThan: String?
    static let fields = ["olderThan"]
}

struct RetentionRequest: RequestFields {
    var dryRun: Bool?
    static let fields = ["dryRun"]
}

struct VerifyRequest: RequestFields {
    var server: String?
    static let fields = ["server"]
}

/// Any JSON value, decoded only to learn a body's field names.
struct AnyField: Decodable {
    init(from decoder: any Decoder) throws {}
}

/// The listing of a folder inside a point (or the one file a path names).
struct FileListing: Encodable {
    static let defaultLimit = 1000
    static let maximumLimit = 10000

    var point: String
    var volume: String
    var path: String
    var kind: String
    /// The folder's entries in all (1 for a path that is not a folder), and which of them
    /// `entries` holds.
    var total: Int
    var offset: Int
    var limit: Int
    var entries: [FileView]
}

/// A point's filesystems, disk by disk.
struct VolumesView: Encodable {
    var disk: String
    var contents: DiskContentsView
}

extension Console {
    /// Runs a long maintenance call (`what`, as a refusal names it) on a thread of its own,
    /// one at a time: a second while one runs is refused (409), and the workers that serve
    /// pages and downloads are never all taken by hours of verify.
    func maintain<T: Sendable>(_ what: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        let running = maintenance.withLock { current -> String? in
            if let current { return current }
            current = what
            return nil
        }
        if let running { throw WebError(.conflict, "\(running) is running in this console; try again when it ends") }
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                let result = Result { try body() }
                self.maintenance.withLock { $0 = nil }
                continuation.resume(with: result)
            }
        }
    }

    func vaultViews() throws -> [VaultView] {
        try repository.catalog.vaults().map { vault in
            VaultView(vault, servers: try repository.catalog.servers(inVault: vault.id).map(\.name))
        }
    }

    func vaultView(_ name: String) throws -> VaultView {
        try Names.validateVaultOrServer(name, what: "vault")
        let vault = try repository.catalog.vault(named: name)
        return VaultView(vault, servers: try repository.catalog.servers(inVault: vault.id).map(\.name))
    }

    func serverViews() throws -> [ServerView] {
        let vaults = Dictionary(uniqueKeysWithValues: try repository.catalog.vaults().map { ($0.id, $0.name) })
        return try repository.catalog.servers().map { server in
            ServerView(
                server, vault: server.vaultId.flatMap { vaults[$0] },
                disks: try repository.catalog.disks(ofServer: server.id), hooks: try? repository.hostHooks(server.name))
        }
    }

    func serverView(_ name: String) throws -> ServerView {
        try Names.validateVaultOrServer(name, what: "server")
        let server = try repository.catalog.server(named: name)
        return ServerView(
            server, vault: try server.vaultId.flatMap { try repository.catalog.vault(id: $0)?.name },
            disks: try repository.catalog.disks(ofServer: server.id), hooks: try? repository.hostHooks(server.name))
    }

    /// The point a path names: its id, or an id prefix of 4 or more characters.
    func point(_ reference: String) throws -> Point {
        guard reference.count >= 4, reference.count <= 64, reference.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
            throw VaultError(
                .invalidArgument, "bad point '\(reference)': give its id, or 4 or more of its first characters")
        }
        return try repository.catalog.point(matching: reference)
    }

    func runningJobs() throws -> [PointView] {
        try repository.views(of: try repository.catalog.pointsBeingMade().filter { $0.deletion == .none })
    }

    func backupNow(server: String, _ body: BackupRequest) throws -> PointView {
        try Names.validateVaultOrServer(server, what: "server")
        let tags = try Names.parseTags((body.tags ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
        let jobs = try repository.prepareManualBackups(
            servers: [server], name: body.name.flatMap { $0.isEmpty ? nil : $0 }, description: body.description ?? "",
            tags: tags, disks: nil)
        for job in jobs { self.jobs.start(job) }
        guard let job = jobs.first else { throw VaultError(.invalidArgument, "nothing to back up") }
        return try repository.view(of: job.point)
    }

    func delete(_ reference: String) throws -> PointView {
        let point = try point(reference)
        guard point.deletion == .none else {
            throw WebError(.conflict, "point \(point.name) is deleted already; undelete it first")
        }
        let deleted = try repository.softDelete(points: [point])
        try releaseDeletedPoints()
        return try repository.view(of: try repository.catalog.point(id: deleted.first?.id ?? point.id) ?? point)
    }

    func undelete(_ reference: String) throws -> PointView {
        let point = try point(reference)
        guard point.deletion == .soft else {
            throw WebError(
                .conflict,
                point.deletion == .none
                    ? "point \(point.name) is not deleted" : "point \(point.name) is purged: it cannot come back")
        }
        let restored = try repository.undelete(point.id)
        return try repository.view(of: try repository.catalog.point(id: restored.id) ?? restored)
    }

    func purge(_ body: PurgeRequest) throws -> PurgeView {
        let age = try body.olderThan.map(Units.durationArgument) ?? 0
        try releaseDeletedPoints()
        let removal = try repository.purge(olderThan: age)
        let views = try removal.points.map { try repository.view(of: try repository.catalog.point(id: $0.id) ?? $0) }
        return PurgeView(purged: views, garbageCollectionProblem: removal.collectionProblem)
    }

    func applyRetention(vault name: String, dryRun: Bool) throws -> RetentionView {
        try Names.validateVaultOrServer(name, what: "vault")
        try releaseDeletedPoints()
        let vault = try repository.catalog.vault(named: name)
        let retention = Retention(repository: repository)
        let removal =
            dryRun ? Removal(points: try retention.plan(vault: vault.name)) : try retention.apply(vault: vault.name)
        return RetentionView(
            vault: vault.name, dryRun: dryRun, points: try repository.views(of: removal.points),
            garbageCollectionProblem: removal.collectionProblem)
    }

    func verify(server: String?) throws -> VerifyView {
        let id = try server.map { name in
            try Names.validateVaultOrServer(name, what: "server")
            return try repository.catalog.server(named: name).id
        }
        return try repository.view(of: try Verifier(repository: repository).verify(server: id))
    }

    /// A point whose disks may be read: active and not soft-deleted (the mount shows no
    /// soft-deleted point either; undelete it first).
    func readablePoint(_ reference: String) throws -> (point: Point, disks: [String]) {
        let point = try point(reference)
        guard point.deletion == .none else {
            throw WebError(.conflict, "point \(point.name) is soft-deleted; undelete it to read its disks or files")
        }
        return try repository.readablePoint(point.id)
    }

    func volumes(of reference: String) throws -> [VolumesView] {
        let (record, disks) = try readablePoint(reference)
        return try disks.map { VolumesView(disk: $0, contents: try files.contents(point: record.id, disk: $0).view) }
    }

    /// The volume named `name` (as under `files/` in the mount) of a readable point.
    func volume(point reference: String, name: String) throws -> (point: Point, volume: Volume) {
        let (record, disks) = try readablePoint(reference)
        for disk in disks {
            let contents = try files.contents(point: record.id, disk: disk)
            if let volume = contents.volumes[name] { return (record, volume) }
            if let view = contents.view.volumes.first(where: { $0.name == name }) {
                throw VaultError(.notFound, "\(name) shows no files: \(view.reason ?? "not readable")")
            }
        }
        throw VaultError(.notFound, "point \(record.name) has no filesystem named '\(name)'")
    }

    /// A folder's entries from `offset`, at most `limit` of them (only theirs are read), or the
    /// one entry a path names when it is not a folder.
    func listing(
        point reference: String, volume name: String, path: String, offset: Int = 0,
        limit: Int = FileListing.defaultLimit
    ) throws -> FileListing {
        let (point, volume) = try volume(point: reference, name: name)
        let inode = try volume.resolve(path)
        let attributes = try volume.reader.attributes(inode)
        func target(_ a: FileAttributes) throws -> FileName? {
            a.kind == .symlink ? try volume.reader.linkTarget(a.inode) : nil
        }
        var entries: [FileView] = []
        var total = 1
        var offset = offset
        if attributes.kind == .directory {
            let all = try volume.listing(inode).entries
            total = all.count
            for entry in all.dropFirst(offset).prefix(limit) {
                let a = try volume.reader.attributes(entry.inode)
                entries.append(FileView(name: entry.name, a, target: try target(a)))
            }
        } else {
            // A path that is not a folder lists itself, whatever the page asked for.
            offset = 0
            let name = FileName(path.split(separator: "/").last.map(String.init) ?? path)
            entries.append(FileView(name: name, attributes, target: try target(attributes)))
        }
        return FileListing(
            point: point.id, volume: name, path: path, kind: attributes.kind.rawValue, total: total, offset: offset,
            limit: limit, entries: entries)
    }
}

extension Query {
    /// Calls that take no query refuse one.
    static func refuseFields(_ request: Request) throws {
        let fields = try fields(request)
        if let name = fields.keys.sorted().first { throw WebError(.badRequest, "unknown query field '\(name)'") }
    }

    /// The `path` field of a file's download (default /): a path inside the filesystem.
    static func path(_ request: Request) throws -> String {
        try path(fields(request), allowed: ["path"])
    }

    /// The fields of a listing: `path`, and which of its entries: `offset` (default 0) and
    /// `limit` (default 1,000, at most 10,000). A folder of a million entries is read page by
    /// page, never answered whole.
    static func listingPage(_ request: Request) throws -> (path: String, offset: Int, limit: Int) {
        let fields = try fields(request)
        return (
            try path(fields, allowed: ["path", "offset", "limit"]),
            try fields["offset"].map { try Units.wholeNumber($0, name: "offset", in: 0...Int(Int32.max)) } ?? 0,
            try fields["limit"].map { try Units.wholeNumber($0, name: "limit", in: 1...FileListing.maximumLimit) }
                ?? FileListing.defaultLimit
        )
    }

    private static func path(_ fields: [String: String], allowed: Set<String>) throws -> String {
        if let name = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw WebError(
                .badRequest,
                "unknown query field '\(name)': this call takes \(allowed.sorted().joined(separator: ", "))")
        }
        let path = fields["path"].flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        guard path.hasPrefix("/"), path.utf8.count <= 4096 else {
            throw WebError(.badRequest, "bad path '\(path.prefix(200))': give it from / (up to 4096 bytes)")
        }
        return path
    }
}
