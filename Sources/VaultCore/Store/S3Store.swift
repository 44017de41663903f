internal import CCurl
import Crypto
import Foundation
import Synchronization

/// Where an S3 repository is and how to reach it: `s3://BUCKET/PREFIX`, an endpoint
/// (path-style addressing), a region and credentials. Credentials come from the environment
/// or `~/.aws/credentials` as the AWS tools read them, never from a command line.
public struct S3Location: Sendable, Equatable {
    public var bucket: String
    /// Keys of this repository start with it; empty, or ending in `/`.
    public var prefix: String
    public var endpoint: String
    public var region: String

    /// Whether `text` names an S3 repository.
    public static func isURL(_ text: String) -> Bool { text.hasPrefix("s3://") }

    /// Parses `s3://BUCKET/PREFIX`; the endpoint is `endpoint`, else `$VAULT_S3_ENDPOINT`.
    public init(
        url: String, endpoint: String? = nil, region: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        guard Self.isURL(url) else { throw VaultError.invalid("'\(url)' is not an s3:// URL") }
        let rest = url.dropFirst("s3://".count)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        bucket = String(parts[0])
        guard bucket.count >= 3, bucket.count <= 63,
            bucket.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") })
        else {
            throw VaultError.invalid("'\(bucket)' is not a bucket name: 3-63 lowercase letters, digits, '-' and '.'")
        }
        var path = parts.count > 1 ? String(parts[1]) : ""
        while path.hasSuffix("/") { path.removeLast() }
        guard !path.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }), !path.contains("//") else {
            throw VaultError.invalid("'\(url)' has an empty, '.' or '..' part in its prefix")
        }
        prefix = path.isEmpty ? "" : path + "/"
        guard let endpoint = endpoint ?? environment["VAULT_S3_ENDPOINT"], !endpoint.isEmpty else {
            throw VaultError.invalid("no S3 endpoint for \(url): give --endpoint URL or set VAULT_S3_ENDPOINT")
        }
        guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
            throw VaultError.invalid("the S3 endpoint '\(endpoint)' must start with http:// or https://")
        }
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.region = region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
    }

    public var url: String { "s3://\(bucket)/\(prefix)" }
}

/// A repository's objects in an S3 bucket (any S3-compatible store; tested against Ceph's
/// RADOS Gateway). New objects use a conditional PUT (`If-None-Match: *`), so a chunk is
/// written once and never overwritten. Requests that fail for a reason that may pass (no
/// connection, 5xx, 429, SlowDown) are retried with backoff for a bounded time.
public final class S3Store: ObjectStore {
    public let s3: S3Location
    private let credentials: String
    /// The session token's header, for temporary credentials.
    private let credentialHeaders: [String]
    private let sigv4: String
    /// Seconds one request may take.
    let timeout: Int
    /// Pauses between attempts of a request that may succeed later; their count bounds it.
    let backoff: [Double]
    /// Spaces requests out when `$VAULT_S3_MAX_REQUESTS` caps them per second.
    private let pace: RequestPace?

    public var location: String { s3.url.hasSuffix("/") ? String(s3.url.dropLast()) : s3.url }
    /// A bucket may be written by any host that has its keys.
    public var isShared: Bool { true }
    /// Keys need no folders.
    public func prepare(prefixes: [String]) throws {}
    /// A PUT stores a whole object or none: nothing is left half-written.
    public func staleTemporaries(prefix: String, olderThan age: Double, now: Double) -> [String] { [] }
    /// Parallel PUTs of a backup: requests wait on the network, not on a core.
    public let writers = 8
    public let openPrefix = 128 << 10

    public init(
        _ s3: S3Location, environment: [String: String] = ProcessInfo.processInfo.environment,
        timeout: Int = 30, backoff: [Double] = [0.1, 0.3, 0.9, 2.0]
    ) throws {
        let credentials = try S3Credentials.load(environment: environment)
        self.s3 = s3
        self.credentials = "\(credentials.accessKey):\(credentials.secretKey)"
        credentialHeaders = credentials.headers
        sigv4 = "aws:amz:\(s3.region):s3"
        self.timeout = timeout
        self.backoff = backoff
        if let text = environment["VAULT_S3_MAX_REQUESTS"], !text.isEmpty {
            guard let rate = Double(text), rate > 0, rate.isFinite else {
                throw VaultError(
                    .invalidArgument, "VAULT_S3_MAX_REQUESTS is '\(text)': give the most requests a second, e.g. 100")
            }
            pace = RequestPace(perSecond: rate)
        } else {
            pace = nil
        }
        var error = [CChar](repeating: 0, count: 256)
        guard vfs_http_init(&error, error.count) == 0 else {
            throw VaultError(
                .io, "cannot use the object store at \(s3.endpoint): \(error.withUnsafeBytes(Self.text(ofCString:)))")
        }
    }

    // MARK: Requests

    /// The text of a NUL-terminated C buffer.
    private static func text(ofCString raw: UnsafeRawBufferPointer) -> String {
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }

    struct Response {
        var status: Int
        var body: [UInt8]
        var rangeTotal: Int?
        /// How many times the request was sent (more than once after failures that may pass).
        var attempts = 1

        /// Whether the store says the bucket itself is missing (not just the object).
        var noBucket: Bool {
            status == 404
                && S3Store.element("Code", in: String(decoding: body.prefix(4096), as: UTF8.self)) == "NoSuchBucket"
        }
    }

    /// What an error answer (an XML document) may hold.
    static let errorBodyLimit = 64 << 10

    private static let emptyHash = SHA256.hash(data: [UInt8]()).map { String(format: "%02x", $0) }.joined()

    /// `key` as a URL below the bucket, %-encoded.
    private func url(_ key: String) -> String {
        "\(s3.endpoint)/\(s3.bucket)/\(Self.encode(s3.prefix + key, keepSlash: true))"
    }

    /// The bucket's URL with `query`, sorted and encoded: libcurl signs the query string as
    /// it is given.
    private func bucketURL(query: [(String, String)]) -> String {
        "\(s3.endpoint)/\(s3.bucket)?"
            + query.sorted { $0.0 < $1.0 }
            .map { "\(Self.encode($0.0, keepSlash: false))=\(Self.encode($0.1, keepSlash: false))" }.joined(
                separator: "&")
    }

    static func encode(_ text: String, keepSlash: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(UnicodeScalar(byte))
            if c.isASCII && (c.isLetter || c.isNumber || "-_.~".contains(c) || (keepSlash && c == "/")) {
                out.append(c)
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// One request, retried while the failure may pass; throws when no answer came at all.
    private func request(
        _ method: String, _ url: String, headers: [String] = [], body: [UInt8] = [],
        maxBody: Int = 64 << 20, what: String
    ) throws -> Response {
        let payloadHash =
            body.isEmpty ? Self.emptyHash : SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
        let all = headers + credentialHeaders + ["x-amz-content-sha256: \(payloadHash)"]
        var attempt = 0
        while true {
            pace?.wait()
            var response = vfs_http_response()
            let code = withCStrings(all) { lines in
                body.withUnsafeBytes { raw in
                    vfs_http_request(
                        method, url, credentials, sigv4, lines, lines.count, raw.baseAddress, raw.count,
                        maxBody, timeout, &response)
                }
            }
            let status = Int(response.status)
            let bytes = response.body.map { Array(UnsafeBufferPointer(start: $0, count: response.body_length)) } ?? []
            let total = response.range_total >= 0 ? Int(response.range_total) : nil
            let error = withUnsafeBytes(of: response.error, Self.text(ofCString:))
            vfs_http_free(&response)
            let slowDown = status == 503 || status == 429 || (status >= 500 && status < 600)
            let tooLong = code != 0 && error.contains("longer than")
            if (code != 0 || slowDown) && !tooLong && attempt < backoff.count {
                usleep(UInt32(backoff[attempt] * 1_000_000))
                attempt += 1
                continue
            }
            if code != 0 {
                if error.contains("longer than") { throw VaultError(.corrupt, "\(what): \(error)") }
                throw VaultError(
                    .unreachable, "cannot \(what): the object store at \(s3.endpoint) does not answer (\(error))")
            }
            return Response(status: status, body: bytes, rangeTotal: total, attempts: attempt + 1)
        }
    }

    /// A failed answer as an error naming what was being done and what the store said.
    private func failure(_ response: Response, _ what: String) -> VaultError {
        let text = String(decoding: response.body.prefix(2048), as: UTF8.self)
        let code = Self.element("Code", in: text) ?? "HTTP \(response.status)"
        switch code {
        case "NoSuchBucket":
            return VaultError(.notFound, "cannot \(what): the bucket '\(s3.bucket)' does not exist at \(s3.endpoint)")
        case "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
            return VaultError(
                .permissionDenied,
                "cannot \(what): the object store refused the session token (\(code)); give fresh temporary credentials"
            )
        case "InvalidAccessKeyId", "SignatureDoesNotMatch":
            return VaultError(
                .permissionDenied,
                "cannot \(what): the object store refused the credentials (\(code)); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and AWS_SESSION_TOKEN for temporary ones"
            )
        case "RequestTimeTooSkewed":
            return VaultError(
                .io, "cannot \(what): this host's clock is too far from the object store's (\(code)); set the clock")
        case "QuotaExceeded":
            return VaultError(.noSpace, "cannot \(what): the bucket's quota is used up (\(code))")
        case _ where response.status == 403:
            return VaultError(
                .permissionDenied,
                "cannot \(what): the object store refused access (\(code)); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones) and the bucket's policy"
            )
        default:
            return VaultError(
                response.status == 404 ? .notFound : .io, "cannot \(what): the object store answered \(code)")
        }
    }

    // MARK: ObjectStore

    public func exists(_ key: String) throws -> Bool {
        let response = try request("HEAD", url(key), what: "look for \(key)")
        switch response.status {
        case 200: return true
        case 404: return false
        default: throw failure(response, "look for \(key)")
        }
    }

    public func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        // Crash tests: a chunk appears with its PUT, so a kill lands just before or just after.
        let chunk = key.hasPrefix(ChunkStore.prefix)
        if chunk { FaultInjection.reached("chunk-written") }
        let response = try request(
            "PUT", url(key), headers: ["If-None-Match: *", "Content-Type: application/octet-stream"],
            body: bytes, what: "store \(key)")
        switch response.status {
        case 200, 201:
            if chunk { FaultInjection.reached("chunk-linked") }
            return true
        case 412 where response.attempts > 1:
            // A retry found an object there: ours, when an earlier attempt was stored but its
            // answer lost.
            return (try? get(key, limit: bytes.count)) == bytes
        case 412: return false
        default: throw failure(response, "store \(key)")
        }
    }

    public func put(_ key: String, _ bytes: [UInt8], durable: Bool) throws {
        let response = try request(
            "PUT", url(key), headers: ["Content-Type: application/octet-stream"], body: bytes, what: "store \(key)")
        guard response.status == 200 || response.status == 201 else { throw failure(response, "store \(key)") }
    }

    public func get(_ key: String, limit: Int) throws -> [UInt8]? {
        let response = try request("GET", url(key), maxBody: max(limit, Self.errorBodyLimit), what: "read \(key)")
        switch response.status {
        case 200:
            guard response.body.count <= limit else {
                throw VaultError(
                    .corrupt,
                    "\(location)/\(key) is damaged: it holds \(response.body.count) bytes, more than the \(limit) its kind may have"
                )
            }
            return response.body
        case 404 where !response.noBucket: return nil
        default: throw failure(response, "read \(key)")
        }
    }

    public func open(_ key: String, prefix: Int) throws -> (reader: ObjectReader, prefix: [UInt8])? {
        guard prefix > 0 else { return try exists(key) ? (S3Reader(store: self, key: key, size: 0), []) : nil }
        let response = try request(
            "GET", url(key), headers: ["Range: bytes=0-\(prefix - 1)"],
            maxBody: max(prefix, Self.errorBodyLimit), what: "read \(key)")
        switch response.status {
        case 206:
            guard let total = response.rangeTotal, response.body.count == min(prefix, total) else {
                throw VaultError(
                    .io, "cannot read \(key): the object store gave a range that does not match the request")
            }
            return (S3Reader(store: self, key: key, size: total), response.body)
        case 200:
            // The whole object, shorter than the range asked for.
            return (S3Reader(store: self, key: key, size: response.body.count), Array(response.body.prefix(prefix)))
        case 416:
            return (S3Reader(store: self, key: key, size: 0), [])
        case 404 where !response.noBucket:
            return nil
        default:
            throw failure(response, "read \(key)")
        }
    }

    /// Bytes `range` of an object.
    func read(_ key: String, _ range: Range<Int>, into destination: UnsafeMutableRawBufferPointer) throws {
        precondition(destination.count == range.count)
        guard !range.isEmpty else { return }
        let response = try request(
            "GET", url(key), headers: ["Range: bytes=\(range.lowerBound)-\(range.upperBound - 1)"],
            maxBody: max(range.count, Self.errorBodyLimit), what: "read \(key)")
        guard response.status == 206 || response.status == 200 else { throw failure(response, "read \(key)") }
        let body =
            response.status == 200
            ? Array(response.body.dropFirst(range.lowerBound).prefix(range.count)) : response.body
        guard body.count == range.count else { throw VaultError(.corrupt, "\(location)/\(key) is truncated") }
        body.withUnsafeBytes { destination.copyMemory(from: $0) }
    }

    public func delete(_ key: String) throws {
        let response = try request("DELETE", url(key), what: "remove \(key)")
        guard [200, 204, 404].contains(response.status) else { throw failure(response, "remove \(key)") }
    }

    public func list(prefix: String) throws -> [StoredObject] {
        var found: [StoredObject] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", s3.prefix + prefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try request("GET", bucketURL(query: query), what: "list \(prefix)")
            guard response.status == 200 else { throw failure(response, "list \(prefix)") }
            let text = String(decoding: response.body, as: UTF8.self)
            for entry in Self.elements("Contents", in: text) {
                guard let key = Self.element("Key", in: entry),
                    let size = Self.element("Size", in: entry).flatMap({ Int64($0) }),
                    key.hasPrefix(s3.prefix)
                else { continue }
                found.append(
                    StoredObject(
                        key: String(key.dropFirst(s3.prefix.count)), size: size, tag: Self.element("ETag", in: entry)))
            }
            if Self.element("IsTruncated", in: text) == "true" {
                guard let next = Self.element("NextContinuationToken", in: text), !next.isEmpty else {
                    throw VaultError(
                        .io,
                        "cannot list \(prefix): the object store said the listing goes on but gave no continuation token"
                    )
                }
                token = next
            } else {
                token = nil
            }
        } while token != nil
        return found
    }

    public func flush() throws {}

    /// Creates the bucket when it does not exist (for `init` and tests).
    public func createBucket() throws {
        let head = try request("HEAD", "\(s3.endpoint)/\(s3.bucket)", what: "look for bucket \(s3.bucket)")
        if head.status == 200 { return }
        guard head.status == 404 else { throw failure(head, "look for bucket \(s3.bucket)") }
        let response = try request("PUT", "\(s3.endpoint)/\(s3.bucket)", what: "create bucket \(s3.bucket)")
        guard
            response.status == 200
                || (response.status == 409
                    && Self.element("Code", in: String(decoding: response.body, as: UTF8.self))
                        == "BucketAlreadyOwnedByYou")
        else {
            throw failure(response, "create bucket \(s3.bucket)")
        }
    }

    // MARK: XML

    /// The text of the first `<name>…</name>` in `xml`, entities decoded.
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"),
            let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex)
        else { return nil }
        return unescape(String(xml[open.upperBound..<close.lowerBound]))
    }

    /// The inner text of every `<name>…</name>` in `xml`.
    static func elements(_ name: String, in xml: String) -> [String] {
        var found: [String] = []
        var rest = xml.startIndex..<xml.endIndex
        while let open = xml.range(of: "<\(name)>", range: rest),
            let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex)
        {
            found.append(String(xml[open.upperBound..<close.lowerBound]))
            rest = close.upperBound..<xml.endIndex
        }
        return found
    }

    static func unescape(_ text: String) -> String {
        guard text.contains("&") else { return text }
        return text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}

/// An object in a bucket opened for ranged reads: each read is one range GET.
struct S3Reader: ObjectReader {
    let store: S3Store
    let key: String
    let size: Int

    func read(_ range: Range<Int>, into destination: UnsafeMutableRawBufferPointer) throws {
        try store.read(key, range, into: destination)
    }

    func close() {}
}

/// Calls `body` with `strings` as an array of C strings that live for the call.
private func withCStrings<T>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> T) -> T {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    return body(copies.map { UnsafePointer($0) })
}

/// At most so many requests a second from this process, however many threads send them: each
/// takes the next free turn and sleeps until it comes.
final class RequestPace: Sendable {
    private let interval: Double
    /// When the next turn is free, in seconds of the monotonic clock.
    private let next = Mutex<Double>(0)

    init(perSecond rate: Double) { interval = 1 / rate }

    func wait() {
        let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        let turn = next.withLock { next -> Double in
            let turn = max(now, next)
            next = turn + interval
            return turn
        }
        if turn > now { usleep(UInt32(min(turn - now, 60) * 1_000_000)) }
    }
}
