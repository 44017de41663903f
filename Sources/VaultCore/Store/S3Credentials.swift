import Foundation

/// An access key and its secret, with the session token of temporary credentials (an
/// assumed role, an instance profile), from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
/// `AWS_SESSION_TOKEN` or from a profile (`AWS_PROFILE`, else `default`) in
/// `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE` overrides the file), as the AWS tools
/// read them.
struct S3Credentials: Sendable {
    var accessKey: String
    var secretKey: String
    /// Sent with every request as `x-amz-security-token` (and signed with it); nil for a
    /// long-term access key.
    var sessionToken: String? = nil

    static func load(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Credentials {
        if let key = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"], !key.isEmpty,
            !secret.isEmpty
        {
            return try S3Credentials(
                accessKey: key, secretKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"],
                from: "AWS_SESSION_TOKEN")
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        let file = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "\(home)/.aws/credentials"
        let profile = environment["AWS_PROFILE"] ?? "default"
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw VaultError(
                .permissionDenied,
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile '\(profile)' in \(file)"
            )
        }
        var section = ""
        var values: [String: String] = [:]
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard section == profile, let equals = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
            values[line[..<equals].trimmingCharacters(in: .whitespacesAndNewlines)] = line[line.index(after: equals)...]
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let key = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] else {
            throw VaultError(
                .permissionDenied,
                "no S3 credentials for profile '\(profile)' in \(file): it needs aws_access_key_id and aws_secret_access_key"
            )
        }
        return try S3Credentials(
            accessKey: key, secretKey: secret, sessionToken: values["aws_session_token"],
            from: "aws_session_token of profile '\(profile)' in \(file)")
    }

    /// An empty token counts as none. A key or token that would break the request's headers
    /// (a line break, a control character) is refused here rather than sent, and so is a
    /// secret that could not sign a request as given: libcurl takes the pair as "key:secret"
    /// in a C string, so a colon in the key or a NUL in the secret would sign with other
    /// values, and the store would answer only that the signature does not match.
    private init(accessKey: String, secretKey: String, sessionToken: String?, from source: String) throws {
        let printable = { (text: String) in text.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7f } }
        guard printable(accessKey), !accessKey.contains(":") else {
            throw VaultError.invalid(
                "the S3 access key holds a space, a colon, a control character or one outside ASCII; an access key has none of them"
            )
        }
        guard printable(secretKey) else {
            throw VaultError.invalid(
                "the S3 secret key holds a space, a control character or one outside ASCII; a secret key has none of them"
            )
        }
        self.accessKey = accessKey
        self.secretKey = secretKey
        guard let token = sessionToken, !token.isEmpty else { return }
        guard printable(token) else {
            throw VaultError.invalid("\(source) holds a space or a control character; a session token has neither")
        }
        self.sessionToken = token
    }

    /// The headers these credentials add to every request.
    var headers: [String] { sessionToken.map { ["x-amz-security-token: \($0)"] } ?? [] }
}
