import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import VaultCore

/// The outermost layer of every request: lets in the token's holder only, checks the CSRF
/// token of every form and API call a session cookie makes, turns every error into a 4xx or
/// 5xx with one line (JSON under /api, a page elsewhere), and sets the security headers on
/// every response, errors too.
struct Guard: RouterMiddleware {
    typealias Context = WebContext
    let console: Console
    let routes: RouteTable

    /// No script, style or frame from anywhere but the console; no inline script.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func handle(
        _ request: Request, context: WebContext, next: (Request, WebContext) async throws -> Response
    ) async throws -> Response {
        var response: Response
        do {
            response = try await admit(request, context: context, next: next)
            if request.method == .head {
                // HEAD is GET without the body: the same status and headers, the length too.
                response.body = ResponseBody(contentLength: response.body.contentLength) { writer in
                    try await writer.finish(nil)
                }
            }
        } catch let error as HTTPError where error.status == .notFound {
            // No route: a path that has routes for other methods answers 405 and names them.
            let allowed = routes.methods(for: request.uri.path)
            let api = request.uri.path.hasPrefix("/api/")
            if allowed.isEmpty {
                response = Self.response(for: error, api: api, pages: console.pages)
            } else {
                response = Self.response(
                    for: WebError(
                        .methodNotAllowed,
                        "\(request.method) is not a method of \(request.uri.path): use \(allowed.joined(separator: ", "))"
                    ),
                    api: api, pages: console.pages)
                response.headers[.allow] = allowed.joined(separator: ", ")
            }
        } catch {
            response = Self.response(for: error, api: request.uri.path.hasPrefix("/api/"), pages: console.pages)
        }
        response.headers[HTTPField.Name("Content-Security-Policy")!] = Self.contentSecurityPolicy
        response.headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        if console.options.usesTLS {
            response.headers[HTTPField.Name("Strict-Transport-Security")!] = "max-age=31536000"
        }
        return response
    }

    private func admit(
        _ request: Request, context: WebContext, next: (Request, WebContext) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        if path == "/login" || path.hasPrefix("/static/") { return try await next(request, context) }
        let api = path.hasPrefix("/api/")
        let reads = request.method == .get || request.method == .head
        if let authorization = request.headers[.authorization] {
            guard authorization.hasPrefix("Bearer "), console.access.isToken(String(authorization.dropFirst(7))) else {
                throw WebError(
                    .unauthorized, "the token is not this console's (see the token file vaultctl serve named)")
            }
            return try await next(request, context)
        }
        guard let id = Self.cookie(Access.cookieName, in: request), let session = console.access.session(id) else {
            if !api && reads {
                let target = path + (request.uri.query.map { "?" + $0 } ?? "")
                return Self.redirect(to: "/login?next=" + Query.encode(target))
            }
            throw WebError(
                .unauthorized, "log in first: send 'Authorization: Bearer TOKEN' (the token file vaultctl serve named)")
        }
        var context = context
        context.session = .init(id: id, csrf: session.csrf)
        var request = request
        if !reads {
            // A form posts its token as a field, a script as a header; either must match.
            var given = request.headers[HTTPField.Name("X-CSRF-Token")!]
            if given == nil, request.headers[.contentType]?.hasPrefix("application/x-www-form-urlencoded") == true {
                let body = try await request.collectBody(upTo: context.maxUploadSize)
                given = try Query.parse(String(buffer: body))["csrf"]
            }
            guard let given, console.access.matches(given, session.csrf) else {
                throw WebError(.forbidden, "the form's CSRF token is missing or stale: reload the page and try again")
            }
        }
        return try await next(request, context)
    }

    static func cookie(_ name: String, in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name {
                    return String(parts[1]).trimmingCharacters(in: .whitespaces)
                }
            }
        }
        return nil
    }

    static func redirect(to location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }

    /// The response for an error: its status, and one line.
    static func response(for error: any Error, api: Bool, pages: Pages) -> Response {
        let (status, code, message) = describe(error)
        var response =
            api
            ? json(ErrorBody(error: .init(code: code, message: message)), status: status)
            : html(pages.errorPage(status: status, message: message), status: status)
        if status == .unauthorized && api { response.headers[.wwwAuthenticate] = "Bearer realm=\"vaultfs\"" }
        if let wait = (error as? WebError)?.retryAfter { response.headers[.retryAfter] = "\(wait)" }
        return response
    }

    /// An error's status, code and line. A refusal of the input is a 4xx; a failure of the
    /// repository or the host is a 5xx.
    static func describe(_ error: any Error) -> (HTTPResponse.Status, String, String) {
        if let error = error as? WebError { return (error.status, error.code, error.message) }
        if let error = error as? VaultError {
            let status: HTTPResponse.Status
            switch error.code {
            case .invalidArgument, .unsupportedFormat: status = .badRequest
            case .notFound, .diskMissing, .noAttribute: status = .notFound
            case .alreadyExists, .busy, .notEmpty, .readOnly, .hasDependants: status = .conflict
            case .permissionDenied: status = .forbidden
            case .unreachable: status = .serviceUnavailable
            case .noSpace: status = HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
            case .cancelled: status = .serviceUnavailable
            case .notARepository, .corrupt, .io, .needsRepair, .wrongKey: status = .internalServerError
            }
            return (status, error.code.rawValue, error.message)
        }
        if let error = error as? any HTTPResponseError {
            let reason = error.status.reasonPhrase
            return (error.status, "http", error.status == .notFound ? "no such page or API route" : reason)
        }
        return (.internalServerError, "internal", "\(error)")
    }
}

/// The routes and their methods, as registered: what a 405 names.
final class RouteTable: Sendable {
    private let routes = Mutex<[(pattern: [Substring], method: String)]>([])

    func add(_ method: HTTPRequest.Method, _ path: String) {
        let pattern = path.split(separator: "/")
        routes.withLock { $0.append((pattern, method.rawValue)) }
    }

    /// The methods of the routes whose pattern `path` matches (`:name` matches any segment).
    func methods(for path: String) -> [String] {
        let segments = path.split(separator: "/")
        var found = routes.withLock { routes in
            routes.filter { route in
                route.pattern.count == segments.count
                    && zip(route.pattern, segments).allSatisfy { $0.hasPrefix(":") || $0 == $1 }
            }.map(\.method)
        }
        if found.contains("GET") { found.append("HEAD") }
        return Array(Set(found)).sorted()
    }
}

/// A refusal the console itself makes, with its HTTP status.
struct WebError: Error {
    var status: HTTPResponse.Status
    var message: String
    var retryAfter: Int?

    init(_ status: HTTPResponse.Status, _ message: String, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.retryAfter = retryAfter
    }

    var code: String {
        switch status {
        case .unauthorized: return "unauthorized"
        case .forbidden: return "forbidden"
        case .tooManyRequests: return "tooManyRequests"
        case .notFound: return "notFound"
        case .rangeNotSatisfiable: return "rangeNotSatisfiable"
        case .conflict: return "conflict"
        case .methodNotAllowed: return "methodNotAllowed"
        default: return "invalidArgument"
        }
    }
}

/// `{"error": {"code": ..., "message": ...}}`: every error of the API.
struct ErrorBody: Codable {
    struct Detail: Codable {
        var code: String
        var message: String
    }
    var error: Detail
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: JSON.encode(value))))
}

func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status, headers: [.contentType: "text/html; charset=utf-8"],
        body: .init(byteBuffer: ByteBuffer(string: text)))
}

extension Access {
    /// Whether a CSRF token given matches the session's, in constant time.
    func matches(_ given: String, _ expected: String) -> Bool {
        let a = Array(given.utf8)
        let b = Array(expected.utf8)
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// Query strings and form bodies: `a=1&b=x%20y`, each name once.
enum Query {
    /// The fields of `text`; a name given twice, or bytes that are not UTF-8 once decoded,
    /// are refused.
    static func parse(_ text: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(parts[0], plusIsSpace: true),
                let value = decode(parts.count == 2 ? parts[1] : "", plusIsSpace: true)
            else {
                throw WebError(.badRequest, "the query or form is not valid percent-encoded UTF-8")
            }
            guard fields[name] == nil else { throw WebError(.badRequest, "'\(name)' is given twice") }
            fields[name] = value
        }
        return fields
    }

    /// The fields of a request's query.
    static func fields(_ request: Request) throws -> [String: String] {
        try parse(request.uri.query ?? "")
    }

    /// Percent-decoded `text`; `+` is a space in a query or form, itself in a path.
    static func decode(_ text: Substring, plusIsSpace: Bool) -> String? {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            switch byte {
            case UInt8(ascii: "+") where plusIsSpace: bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            default: bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// `text` for a query value or a path segment: everything but unreserved characters
    /// percent-encoded.
    static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(UnicodeScalar(byte))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~/".contains(c)) {
                out.append(c)
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}

/// Registers routes in a group and in the route table together.
struct Routes {
    let group: RouterGroup<WebContext>
    let prefix: String
    let table: RouteTable

    @discardableResult
    func get(
        _ path: String, use handler: @escaping @Sendable (Request, WebContext) async throws -> Response
    ) -> Routes {
        table.add(.get, prefix + "/" + path.drop { $0 == "/" })
        group.get(RouterPath(path), use: handler)
        group.head(RouterPath(path), use: handler)
        return self
    }

    @discardableResult
    func post(
        _ path: String, use handler: @escaping @Sendable (Request, WebContext) async throws -> Response
    ) -> Routes {
        table.add(.post, prefix + "/" + path.drop { $0 == "/" })
        group.post(RouterPath(path), use: handler)
        return self
    }
}
