import Foundation

/// A real `vaultctl serve` over a repository, on a port of its choosing on 127.0.0.1, and a
/// client for it (curl). Stopped (SIGTERM, then SIGKILL after 10 s) by `stop` or when it
/// goes away.
public final class ConsoleServer {
    public let process: Process
    /// `http://127.0.0.1:PORT` (or https).
    public let url: String
    public let port: Int
    public let tokenFile: String
    public let token: String
    public let log: String
    private let scratch: Scratch

    /// Starts the console and waits (up to 30 s) until it says where it listens.
    public init(
        repository: String, tokenFile: String, arguments: [String] = [], environment: [String: String] = [:]
    ) throws {
        scratch = Scratch("console")
        log = scratch.file("serve.log")
        self.tokenFile = tokenFile
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productPath("vaultctl"))
        process.arguments =
            ["serve", "-R", repository, "--listen", "127.0.0.1:0", "--token-file", tokenFile] + arguments
        var variables = ProcessInfo.processInfo.environment
        variables["VAULT_CONFIG_DIR"] = testConfigDirectory
        variables.merge(environment) { _, new in new }
        process.environment = variables
        let handle = FileHandle(forWritingAtPath: log)
        defer { try? handle?.close() }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(30)
        var found: (String, Int)?
        while Date() < deadline, found == nil {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"https?://[^ ]+:[0-9]+/"#, options: .regularExpression) {
                // Reached on 127.0.0.1 whatever address it listens on.
                let address = text[range].dropLast()
                let port = Int(address.split(separator: ":").last ?? "") ?? 0
                found = ("\(address.hasPrefix("https") ? "https" : "http")://127.0.0.1:\(port)", port)
            } else if !process.isRunning {
                break
            } else {
                usleep(50_000)
            }
        }
        guard let (url, port) = found else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw TestError.failed("vaultctl serve did not start within 30 s: \(text)")
        }
        self.url = url
        self.port = port
        token = ((try? String(contentsOfFile: tokenFile, encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { stop() }

    /// Stops the server: SIGTERM, and SIGKILL if it is still there 10 s later.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// What a request got back.
    public struct Reply {
        public var status: Int
        /// Header names in lower case.
        public var headers: [String: String]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }

        public func json() throws -> Any {
            try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
        }
    }

    public enum Credential {
        case none
        case token(String)
        /// A curl cookie jar: sent, and updated with what the server sets.
        case cookies(String)
    }

    /// One request with curl, the path sent exactly as given (`--path-as-is`, no globbing).
    public func request(
        _ method: String = "GET", _ path: String, as credential: Credential? = nil, headers: [String] = [],
        body: String? = nil, form: [String: String]? = nil, timeout: TimeInterval = 120
    ) throws -> Reply {
        let work = Scratch("curl")
        var arguments = [
            "curl", "-s", "-S", "-g", "--path-as-is", "-k", "-X", method, "-o", work.file("body"), "-D",
            work.file("headers"), "-w", "%{http_code}", "--max-time", "\(Int(timeout))",
        ]
        switch credential ?? .token(token) {
        case .none: break
        case .token(let token): arguments += ["-H", "Authorization: Bearer \(token)"]
        case .cookies(let jar): arguments += ["-b", jar, "-c", jar]
        }
        for header in headers { arguments += ["-H", header] }
        if let body {
            _ = FileManager.default.createFile(atPath: work.file("request"), contents: Data(body.utf8))
            arguments += ["--data-binary", "@\(work.file("request"))", "-H", "Content-Type: application/json"]
        }
        if let form {
            for (name, value) in form.sorted(by: { $0.key < $1.key }) {
                arguments += ["--data-urlencode", "\(name)=\(value)"]
            }
        }
        let result = try runCommand(arguments + [url + path], timeout: timeout + 10)
        guard let status = Int(result.stdout), status > 0 else {
            throw TestError.failed("curl \(method) \(path): \(result.stderr)")
        }
        var headers: [String: String] = [:]
        let text = (try? String(contentsOfFile: work.file("headers"), encoding: .utf8)) ?? ""
        for line in text.split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        return Reply(status: status, headers: headers, body: (try? readBytes(work.file("body"))) ?? [])
    }

    /// Logs in through the form into a new cookie jar in `folder`; returns the jar and the
    /// session's CSRF token (read off a page, as a browser has it).
    public func logIn(jar: String) throws -> (jar: String, csrf: String) {
        let reply = try request("POST", "/login", as: .cookies(jar), form: ["token": token, "next": "/vaults"])
        guard reply.status == 303 else { throw TestError.failed("login gave \(reply.status): \(reply.text)") }
        let page = try request("GET", "/vaults", as: .cookies(jar)).text
        guard let range = page.range(of: #"name="csrf-token" content="[0-9a-f]{64}""#, options: .regularExpression)
        else { throw TestError.failed("no CSRF token on the page: \(page)") }
        return (jar, String(page[range].dropLast().suffix(64)))
    }
}
