import Foundation
import Hummingbird
import Mustache
import VaultCore
import VaultFiles

/// The console's pages, rendered on the server from the templates in Templates.swift. Every
/// page works without JavaScript; the script adds live progress and confirmations.
struct Pages: Sendable {
    let library: MustacheLibrary

    init() throws {
        MustacheContentTypes.register(ScalarHTML(), named: ScalarHTML.name)
        var library = MustacheLibrary()
        // Every template, partials too, escapes with ScalarHTML from its first tag.
        for (name, text) in Templates.all {
            try library.register("{{% CONTENT_TYPE: \(ScalarHTML.name) }}" + text, named: name)
        }
        self.library = library
    }

    /// `template` filled from `values`, inside the layout.
    func render(
        _ template: String, title: String, values: [String: Any], csrf: String, loggedIn: Bool, repository: String
    ) -> String {
        let body = library.render(values, withTemplate: template) ?? ""
        let sections = [
            "vaults": "Vaults", "servers": "Servers", "points": "Points", "history": "History", "jobs": "Jobs",
        ]
        let nav: [[String: Any]] = ["vaults", "servers", "points", "history", "jobs"].map {
            ["href": "/\($0)", "label": sections[$0] ?? $0, "current": $0 == template]
        }
        let page: [String: Any] = [
            // Where the backups are is said to those logged in only.
            "title": title, "body": body, "nav": nav, "csrf": csrf, "loggedIn": loggedIn,
            "repository": loggedIn ? repository : "",
        ]
        return library.render(page, withTemplate: "layout") ?? ""
    }

    func errorPage(status: HTTPResponse.Status, message: String) -> String {
        let body =
            library.render(
                ["status": "\(status.code) \(status.reasonPhrase)", "message": message], withTemplate: "error")
            ?? ""
        return library.render(["title": "\(status.code)", "body": body, "nav": [] as [Any]], withTemplate: "layout")
            ?? ""
    }
}

extension Console {
    /// A page: `values` made and the template rendered on the worker threads (they read the
    /// catalog), the title from the values.
    func page(
        _ template: String, _ context: WebContext,
        values: @escaping @Sendable () throws -> (title: String, values: [String: Any])
    ) async throws -> Response {
        let csrf = context.session?.csrf ?? ""
        let loggedIn = context.session != nil
        let text = try await blocking {
            var (title, values) = try values()
            values["csrf"] = csrf
            return self.pages.render(
                template, title: title, values: values, csrf: csrf, loggedIn: loggedIn,
                repository: self.repository.location.name)
        }
        return html(text)
    }

    func addPages(to router: Router<WebContext>, routes table: RouteTable) {
        let router = Routes(group: router.group(""), prefix: "", table: table)
        router.get("/") { _, _ in Guard.redirect(to: "/points") }
        router.get("/static/console.css") { _, _ in Self.asset(Templates.css, type: "text/css; charset=utf-8") }
        router.get("/static/console.js") { _, _ in Self.asset(Templates.script, type: "text/javascript; charset=utf-8")
        }
        router.get("/login") { request, context in
            let next = Self.localTarget(try Query.fields(request)["next"])
            return html(
                self.pages.render(
                    "login", title: "Log in", values: ["next": next], csrf: "", loggedIn: false,
                    repository: self.repository.location.name))
        }
        router.post("/login") { request, context in try await self.login(request, context) }
        router.post("/logout") { _, context in
            if let session = context.session { self.access.endSession(session.id) }
            var response = Guard.redirect(to: "/login")
            response.headers[.setCookie] = self.cookie(value: "", maxAge: 0)
            return response
        }
        router.get("/vaults") { request, context in
            try Query.refuseFields(request)
            return try await self.page("vaults", context) {
                let rows = try self.vaultRows()
                return ("Vaults", ["vaults": rows, "empty": rows.isEmpty])
            }
        }
        router.get("/servers") { request, context in
            try Query.refuseFields(request)
            return try await self.page("servers", context) {
                let rows = try self.serverRows()
                return ("Servers", ["servers": rows, "empty": rows.isEmpty])
            }
        }
        router.get("/points") { request, context in
            try await self.listPage("points", title: "Points", request, context, history: false)
        }
        router.get("/history") { request, context in
            try await self.listPage("history", title: "History", request, context, history: true)
        }
        router.get("/jobs") { _, context in
            try await self.page("jobs", context) {
                let jobs = try self.runningJobs()
                let restores = self.restoreStatuses().map(Self.restoreRow)
                return (
                    "Jobs",
                    [
                        "jobs": jobs.map(Self.pointRow), "empty": jobs.isEmpty, "restores": restores,
                        "hasRestores": !restores.isEmpty,
                    ]
                )
            }
        }
        router.get("/points/:point/restore") { request, context in
            let reference = try Self.parameter(context, "point")
            let disk = try Query.fields(request)["disk"]
            return try await self.page("restore", context) {
                let point = try self.readablePoint(reference).point
                let source = try self.repository.exportSource(point: point.id, disk: disk)
                let target = try self.hostTarget(server: source.point.serverName, disk: source.disk)
                var values = Self.pointRow(try self.repository.view(of: source.point))
                values["disk"] = source.disk
                values["target"] = target
                return ("Restore \(source.point.name)", values)
            }
        }
        router.post("/points/:point/restore") { request, context in
            let reference = try Self.parameter(context, "point")
            let form = try await Self.form(request, context)
            let body = RestoreRequest(disk: form["disk"], instant: form["instant"] == "true", fromPoint: nil)
            _ = try await self.restore(point: reference, body)
            return Guard.redirect(to: "/jobs")
        }
        for (action, cancel) in [("finish", false), ("cancel", true)] {
            router.post("/restores/:restore/\(action)") { request, context in
                let id = try Self.parameter(context, "restore")
                _ = try await Self.form(request, context)
                _ = try await self.blocking { try self.endRestore(id, cancel: cancel) }
                return Guard.redirect(to: "/jobs")
            }
        }
        router.get("/points/:point") { request, context in
            try Query.refuseFields(request)
            let reference = try Self.parameter(context, "point")
            return try await self.page("point", context) {
                let values = try self.pointValues(reference)
                return ("Point \(values["name"] ?? "")", values)
            }
        }
        router.get("/points/:point/files/:volume") { request, context in
            let (path, offset, limit) = try Query.listingPage(request)
            let reference = try Self.parameter(context, "point")
            let volume = try Self.parameter(context, "volume")
            return try await self.page("files", context) {
                (
                    "Files of \(volume)",
                    try self.fileValues(reference, volume: volume, path: path, offset: offset, limit: limit)
                )
            }
        }
        router.get("/servers/:server/backup") { _, context in
            let server = try Self.parameter(context, "server")
            return try await self.page("backup", context) {
                _ = try self.serverView(server)
                return ("Back up \(server)", ["server": server])
            }
        }
        router.post("/servers/:server/backup") { request, context in
            let server = try Self.parameter(context, "server")
            let form = try await Self.form(request, context)
            let tags = try (form["tags"] ?? "").split(whereSeparator: \.isNewline).map {
                $0.trimmingCharacters(in: .whitespaces)
            }.filter { !$0.isEmpty }.reduce(into: [String: String]()) { tags, line in
                let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw VaultError(.invalidArgument, "bad tag '\(line)': use KEY=VALUE") }
                tags[parts[0]] = parts[1]
            }
            let body = BackupRequest(name: form["name"], description: form["description"], tags: tags)
            let view = try await self.blocking { try self.backupNow(server: server, body) }
            return Guard.redirect(to: "/jobs?started=" + Query.encode(view.id))
        }
        router.get("/points/:point/delete") { _, context in
            let reference = try Self.parameter(context, "point")
            return try await self.page("delete", context) {
                let view = try self.repository.view(of: try self.point(reference))
                return ("Delete \(view.name)", Self.pointRow(view))
            }
        }
        router.post("/points/:point/delete") { request, context in
            let reference = try Self.parameter(context, "point")
            _ = try await Self.form(request, context)
            let view = try await self.blocking { try self.delete(reference) }
            return Guard.redirect(to: "/points/\(view.id)")
        }
        router.post("/points/:point/undelete") { request, context in
            let reference = try Self.parameter(context, "point")
            _ = try await Self.form(request, context)
            let view = try await self.blocking { try self.undelete(reference) }
            return Guard.redirect(to: "/points/\(view.id)")
        }
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: type, .cacheControl: "max-age=3600"],
            body: .init(byteBuffer: .init(string: text)))
    }

    /// A form's fields (the Guard has read the body once already when it checked the CSRF
    /// token: it is collected, so this reads it again).
    static func form(_ request: Request, _ context: WebContext) async throws -> [String: String] {
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        return try Query.parse(String(buffer: body))
    }

    /// Where a login goes on to: a path of this console only, never another site.
    /// A path of this console: `/` then letters, digits and `/_.~%?=&-` only (a tab, a
    /// backslash or a second `/` at the start could make a browser go elsewhere).
    static func localTarget(_ next: String?) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.~%?=&-".unicodeScalars)
        guard let next, next.hasPrefix("/"), !next.hasPrefix("//"), next.utf8.count <= 2048,
            next.unicodeScalars.allSatisfy(allowed.contains)
        else { return "/points" }
        return next
    }

    func cookie(value: String, maxAge: Int) -> String {
        "\(Access.cookieName)=\(value); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(maxAge)"
            + (options.usesTLS ? "; Secure" : "")
    }

    private func login(_ request: Request, _ context: WebContext) async throws -> Response {
        let form = try await Self.form(request, context)
        let next = Self.localTarget(form["next"])
        let right = form["token"].map { access.isToken($0.trimmingCharacters(in: .whitespaces)) } ?? false
        // The limit holds back guessing, not the token's holder: others on the same address
        // (every local user is 127.0.0.1) cannot lock the operator out.
        if !right, let wait = access.loginWait(client: context.client) {
            throw WebError(
                .tooManyRequests, "too many failed logins from here: try again in \(wait) s", retryAfter: wait)
        }
        guard right else {
            access.recordFailure(client: context.client)
            let page = pages.render(
                "login", title: "Log in", values: ["next": next, "failed": true], csrf: "", loggedIn: false,
                repository: repository.location.name)
            return html(page, status: .unauthorized)
        }
        let session = access.startSession()
        var response = Guard.redirect(to: next)
        response.headers[.setCookie] = cookie(value: session.id, maxAge: Int(Access.sessionLifetime))
        return response
    }

    private func listPage(
        _ template: String, title: String, _ request: Request, _ context: WebContext, history: Bool
    ) async throws -> Response {
        let fields = try Query.fields(request)
        let query = try PointQuery(fields: fields)
        return try await page(template, context) {
            let page = try self.repository.page(query, history: history)
            func link(offset: Int) -> String {
                var shown = fields
                shown["offset"] = offset == 0 ? nil : "\(offset)"
                let text = shown.sorted { $0.key < $1.key }.map { "\($0.key)=\(Query.encode($0.value))" }
                    .joined(separator: "&")
                return "/\(template)" + (text.isEmpty ? "" : "?" + text)
            }
            let last = min(page.total, page.offset + page.points.count)
            var values: [String: Any] = [
                "rows": PointRows.html(page.points, history: history), "empty": page.points.isEmpty,
                "total": page.total,
                "first": page.points.isEmpty ? 0 : page.offset + 1, "last": last,
                "filters": PointQuery.names.subtracting(["offset", "limit"]).reduce(into: [String: String]()) {
                    $0[$1] = fields[$1] ?? ""
                }, "deletedChecked": query.includeDeleted,
                "choices": [
                    ("type", "Type", ["full", "incremental"]), ("schedule", "Schedule", ["policy", "manual"]),
                    ("status", "Status", ["Active", "Error", "Creating"]),
                ].map { name, label, choices -> [String: Any] in
                    let current = (fields[name] ?? "").lowercased()
                    return [
                        "name": name, "label": label,
                        "options": [["value": "", "text": "any", "selected": current.isEmpty]]
                            + choices.map { ["value": $0, "text": $0, "selected": $0.lowercased() == current] },
                    ]
                },
            ]
            if page.offset > 0 { values["previous"] = link(offset: max(0, page.offset - page.limit)) }
            if last < page.total { values["next"] = link(offset: page.offset + page.limit) }
            return (title, values)
        }
    }

    static func restoreRow(_ status: InstantRestoreStatus) -> [String: Any] {
        var row: [String: Any] = [
            "id": status.id, "short": String(status.id.prefix(8)), "point": status.point, "name": status.pointName,
            "server": status.server, "disk": status.disk, "target": status.target, "state": status.state.rawValue,
            "percent": Int(status.percent), "filled": Units.formatSize(status.filledBytes),
            "size": Units.formatSize(status.size), "complete": status.state == .complete,
        ]
        if let eta = status.etaSeconds { row["eta"] = Units.formatDuration(eta) }
        if let error = status.error { row["error"] = error }
        return row
    }

    static func pointRow(_ view: PointView) -> [String: Any] {
        var row: [String: Any] = [
            "id": view.id, "short": String(view.id.prefix(8)), "name": view.name, "server": view.server,
            "vault": view.vault, "type": view.type, "schedule": view.scheduleType, "status": view.status,
            "statusClass": view.status.lowercased(), "time": view.time, "finished": view.finishedAt ?? "-",
            "disk": Units.formatSize(view.diskBytes), "added": Units.formatSize(view.addedBytes),
            "deletion": view.deletion, "deleted": !view.deletion.isEmpty, "reason": view.error ?? "",
            "description": view.description, "active": view.status == "Active",
        ]
        if let progress = view.progress {
            row["percent"] = progress.percent
            row["done"] = Units.formatSize(progress.doneBytes)
            row["total"] = Units.formatSize(progress.totalBytes)
        }
        return row
    }

    func vaultRows() throws -> [[String: Any]] {
        try repository.catalog.vaults().map { vault in
            let servers = try repository.catalog.servers(inVault: vault.id).map(\.name)
            return [
                "name": vault.name, "servers": servers.map { ["name": $0] }, "policy": policyText(vault.policy),
                "next": vault.policy.map { Units.formatTime($0.nextSlot(after: Date())) } ?? "-",
            ]
        }
    }

    func serverRows() throws -> [[String: Any]] {
        let latest = try repository.catalog.latestPointByServer()
        return try serverViews().map { view in
            var row: [String: Any] = [
                "name": view.server, "vault": view.vault ?? "-",
                "disks": view.disks.map(\.name).joined(separator: ", "),
            ]
            if let point = latest[view.server] { row["last"] = Self.pointRow(try repository.view(of: point)) }
            return row
        }
    }

    func pointValues(_ reference: String) throws -> [String: Any] {
        let point = try point(reference)
        let view = try repository.view(of: point)
        var values = Self.pointRow(view)
        values["tags"] = view.tags.sorted { $0.key < $1.key }.map { ["key": $0.key, "value": $0.value] }
        values["disks"] = view.disks.map { disk -> [String: Any] in
            var row: [String: Any] = [
                "name": disk.name, "size": Units.formatSize(disk.size), "stored": Units.formatSize(disk.storedBytes),
                "changed": Units.formatSize(disk.changedBytes),
                "readable": view.status == "Active" && view.deletion.isEmpty,
                "image": "/api/v1/points/\(view.id)/disks/\(Query.encode(disk.name))/image",
            ]
            // Offered where this host backs the disk up from a path: the one place it restores to.
            if view.status == "Active", view.deletion.isEmpty,
                let target = try? hostTarget(server: view.server, disk: disk.name)
            {
                row["target"] = target
                row["restore"] = "/points/\(view.id)/restore?disk=\(Query.encode(disk.name))"
            }
            return row
        }
        values["chain"] = try repository.views(of: try repository.chain(of: point)).map(Self.pointRow)
        if point.status == .active && point.deletion == .none {
            values["hasVolumes"] = true
            values["volumes"] = try volumes(of: point.id).flatMap { disk in
                disk.contents.volumes.map { volume -> [String: Any] in
                    [
                        "name": volume.name, "disk": disk.disk, "filesystem": volume.filesystem ?? "-",
                        "size": Units.formatSize(volume.size), "shown": volume.shown, "reason": volume.reason ?? "",
                        "href": "/points/\(view.id)/files/\(Query.encode(volume.name))?path=/",
                    ]
                }
            }
        }
        return values
    }

    func fileValues(_ reference: String, volume: String, path: String, offset: Int, limit: Int) throws -> [String: Any]
    {
        let listing = try listing(point: reference, volume: volume, path: path, offset: offset, limit: limit)
        let base = "/points/\(listing.point)/files/\(Query.encode(volume))"
        let content = "/api/v1/points/\(listing.point)/files/\(Query.encode(volume))/content"
        let parts = path.split(separator: "/").map(String.init)
        var crumbs: [[String: Any]] = [["name": volume, "href": "\(base)?path=/"]]
        for i in parts.indices {
            crumbs.append([
                "name": parts[i], "href": "\(base)?path=" + Query.encode("/" + parts[...i].joined(separator: "/")),
            ])
        }
        let folder = parts.isEmpty ? "" : "/" + parts.joined(separator: "/")
        let entries = listing.entries.map { entry -> [String: Any] in
            let full = folder + "/" + entry.name
            var row: [String: Any] = [
                "name": entry.name, "kind": entry.kind, "mode": entry.mode, "size": Units.formatSize(entry.size),
                "modified": entry.modified, "isFolder": entry.kind == "directory", "isFile": entry.kind == "file",
                "browse": "\(base)?path=" + Query.encode(full), "download": "\(content)?path=" + Query.encode(full),
            ]
            // Absent, not empty: a section of an empty string still shows in mustache.
            if let target = entry.target { row["target"] = target }
            return row
        }
        var values: [String: Any] = [
            "point": listing.point, "short": String(listing.point.prefix(8)), "volume": volume, "path": path,
            "crumbs": crumbs, "entries": entries, "isFolder": listing.kind == "directory",
            "tar": "\(content)?path=" + Query.encode(path), "empty": listing.total == 0,
        ]
        // A folder of more entries than a page: which are shown, and links to the others. Past
        // the end, Previous goes to the last page.
        let offset = listing.offset
        if listing.kind == "directory", listing.total > 0, listing.total > limit || offset > 0 {
            func link(_ offset: Int) -> String {
                "\(base)?path=" + Query.encode(path) + (offset > 0 ? "&offset=\(offset)" : "")
                    + (limit == FileListing.defaultLimit ? "" : "&limit=\(limit)")
            }
            values["paged"] = true
            values["shown"] =
                entries.isEmpty
                ? "none of \(listing.total)" : "\(offset + 1)–\(offset + entries.count) of \(listing.total)"
            if offset > 0 {
                values["previous"] = link(min(max(0, offset - limit), (listing.total - 1) / limit * limit))
            }
            if offset + entries.count < listing.total { values["next"] = link(offset + limit) }
        }
        return values
    }
}

/// HTML escaping one Unicode scalar at a time. swift-mustache's own escapes whole characters
/// (grapheme clusters), and a `"` or `<` joined with a combining mark, or after U+0600, is one
/// character that is not `"` or `<`: a guest's file name or a point's description could then
/// open a tag or leave an attribute. Here every `<`, `>`, `&`, `"` and `'` scalar is replaced,
/// whatever it is joined with. It works on UTF-8 bytes: the five are ASCII, and no byte of
/// another scalar's UTF-8 is below 0x80, so each of their bytes is one whole scalar.
struct ScalarHTML: MustacheContentType {
    static let name = "SCALAR-HTML"

    func escapeText(_ text: String) -> String { Self.escape(text) }

    static func escape(_ text: String) -> String {
        let special: (UInt8) -> Bool = {
            $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") || $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "\"")
                || $0 == UInt8(ascii: "'")
        }
        guard text.utf8.contains(where: special) else { return text }
        var escaped: [UInt8] = []
        escaped.reserveCapacity(text.utf8.count + 16)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "<"): escaped += "&lt;".utf8
            case UInt8(ascii: ">"): escaped += "&gt;".utf8
            case UInt8(ascii: "&"): escaped += "&amp;".utf8
            case UInt8(ascii: "\""): escaped += "&quot;".utf8
            case UInt8(ascii: "'"): escaped += "&#39;".utf8
            default: escaped.append(byte)
            }
        }
        return String(decoding: escaped, as: UTF8.self)
    }
}

/// The rows of the points and history tables, written here and not by their templates: a page
/// of 100 rows took about 5 ms in swift-mustache, which casts every value it looks up, and that
/// was most of a page's time. Every value is escaped by ScalarHTML, as the templates escape.
enum PointRows {
    static func html(_ views: [PointView], history: Bool) -> String {
        var out = ""
        out.reserveCapacity(views.count * 640)
        for view in views {
            let id = ScalarHTML.escape(view.id)
            let short = ScalarHTML.escape(String(view.id.prefix(8)))
            let server = ScalarHTML.escape(view.server)
            let name = ScalarHTML.escape(view.name)
            let type = ScalarHTML.escape(view.type)
            let schedule = ScalarHTML.escape(view.scheduleType)
            let status = ScalarHTML.escape(view.status)
            let statusClass = ScalarHTML.escape(view.status.lowercased())
            let deletion = ScalarHTML.escape(view.deletion)
            let time = ScalarHTML.escape(view.time)
            out += "<tr><td><a href=\"/points/\(id)\"><code>\(short)</code></a></td><td>\(server)</td>"
            if history {
                let finished = ScalarHTML.escape(view.finishedAt ?? "-")
                let reason = ScalarHTML.escape(view.error ?? "")
                out += "<td>\(name)</td>\n<td><span class=\"status \(statusClass)\">\(status)</span></td>"
                out += "<td>\(type)</td><td>\(schedule)</td><td>\(time)</td><td>\(finished)</td>\n"
                out += "<td>\(deletion)</td><td>\(reason)</td></tr>\n"
            } else {
                let disk = ScalarHTML.escape(Units.formatSize(view.diskBytes))
                let added = ScalarHTML.escape(Units.formatSize(view.addedBytes))
                out += "<td><a href=\"/points/\(id)\">\(name)</a></td><td>\(type)</td><td>\(schedule)</td>\n"
                out += "<td><span class=\"status \(statusClass)\">\(status)</span> \(deletion)</td>"
                out += "<td>\(disk)</td><td>\(added)</td><td>\(time)</td></tr>\n"
            }
        }
        return out
    }
}
