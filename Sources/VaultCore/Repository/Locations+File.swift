import Foundation

/// The locations file's text: written by `save`, read by `load`, a strict subset of TOML.
extension Locations {
    /// The optional keys of a `[[location]]` table, in the order they are written.
    static let optionalKeys = ["endpoint", "key-file", "mirror-of", "passphrase-file", "region", "state-dir"]

    /// The `Location` field an optional key sets.
    static func field(_ key: String) -> WritableKeyPath<Location, String?>? {
        switch key {
        case "endpoint": return \.endpoint
        case "key-file": return \.keyFile
        case "mirror-of": return \.mirrorOf
        case "passphrase-file": return \.passphraseFile
        case "region": return \.region
        case "state-dir": return \.stateDir
        default: return nil
        }
    }

    /// The file's text: a comment, then a `[[location]]` table for each.
    var text: String {
        var lines = [
            "# vaultfs locations: each a named repository. Written by 'vaultctl location add|remove|default';",
            "# edits by hand are read as long as they keep this form.",
        ]
        for location in entries {
            lines += ["", "[[location]]", "name = \(Self.quoted(location.name))"]
            lines.append("repository = \(Self.quoted(location.repository))")
            if location.name == defaultLocation?.name { lines.append("default = true") }
            for key in Self.optionalKeys {
                if let path = Self.field(key), let value = location[keyPath: path] {
                    lines.append("\(key) = \(Self.quoted(value))")
                }
            }
        }
        for copy in copies {
            lines += [
                "", "[[copy]]", "vault = \(Self.quoted(copy.vault))", "to = \(Self.quoted(copy.to))",
                "every = \(Self.quoted(Units.formatDuration(Double(copy.everySeconds))))",
                "keep-fulls = \(copy.keepFulls)",
            ]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A TOML basic string.
    static func quoted(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                out += String(format: "\\u%04X", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Reads the subset of TOML this file uses: comments, `[[location]]` tables, and
    /// `key = "string"` (or `'literal'`) and `default = true|false`. Anything else is refused
    /// with its line, so a typo never silently drops a setting.
    mutating func parse(_ text: String) throws {
        var current: (location: Location, line: Int, seen: Set<String>, isDefault: Bool)?
        var defaults: [String] = []
        var inCopy = false
        func finish() throws {
            inCopy = false
            guard let (location, line, seen, isDefault) = current else { return }
            guard seen.contains("name"), seen.contains("repository") else {
                throw VaultError.invalid("\(path) line \(line): a [[location]] needs a name and a repository")
            }
            do {
                try location.validate()
            } catch let error as VaultError {
                throw VaultError.invalid("\(path) line \(line): \(error.message)")
            }
            guard location.repository.hasPrefix("/") || S3Location.isURL(location.repository) else {
                throw VaultError.invalid(
                    "\(path) line \(line): the repository of '\(location.name)' is an absolute path or s3://BUCKET/PREFIX"
                )
            }
            guard !entries.contains(where: { $0.name == location.name }) else {
                throw VaultError.invalid("\(path) line \(line): location '\(location.name)' is named twice")
            }
            entries.append(location)
            if isDefault { defaults.append(location.name) }
        }
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line == "[[location]]" {
                try finish()
                current = (Location(name: "", repository: ""), number, [], false)
                continue
            }
            if line == "[[copy]]" {
                try finish()
                current = nil
                inCopy = true
                continue
            }
            if inCopy { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw VaultError.invalid("\(path) line \(number): expected [[location]], [[copy]] or KEY = VALUE")
            }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            let rest = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard current != nil else {
                throw VaultError.invalid("\(path) line \(number): '\(key)' outside a [[location]] table")
            }
            guard !current!.seen.contains(key) else {
                throw VaultError.invalid("\(path) line \(number): '\(key)' is given twice")
            }
            current!.seen.insert(key)
            if key == "default" {
                switch Self.withoutComment(rest) {
                case "true": current!.isDefault = true
                case "false": current!.isDefault = false
                default: throw VaultError.invalid("\(path) line \(number): default is true or false")
                }
                continue
            }
            let value = try Self.string(rest, at: "\(path) line \(number)")
            switch key {
            case "name": current!.location.name = value
            case "repository": current!.location.repository = value
            default:
                guard let field = Self.field(key) else {
                    throw VaultError.invalid(
                        "\(path) line \(number): unknown key '\(key)' (known: name, repository, default, \(Self.optionalKeys.joined(separator: ", ")))"
                    )
                }
                current!.location[keyPath: field] = value
            }
        }
        try finish()
        guard defaults.count <= 1 else {
            throw VaultError.invalid(
                "\(path): more than one location is the default (\(defaults.joined(separator: ", ")))")
        }
        defaultName = defaults.first ?? entries.first?.name
    }

    /// Reads the `[[copy]]` tables: `vault`, `to`, `every` (a duration such as \"24h\") and
    /// `keep-fulls` (a number), each once; the vault once in the file, the target a location
    /// of it.
    mutating func parseCopies(_ text: String) throws {
        var current: (line: Int, values: [String: String])?
        func finish() throws {
            guard let (line, values) = current else { return }
            current = nil
            let place = "\(path) line \(line)"
            guard let vault = values["vault"], let to = values["to"], let every = values["every"],
                let keep = values["keep-fulls"]
            else {
                throw VaultError.invalid("\(place): a [[copy]] needs vault, to, every and keep-fulls")
            }
            guard let seconds = Units.parseDuration(every), seconds < Double(Int32.max) else {
                throw VaultError.invalid("\(place): bad every '\(every)': use a duration such as 24h or 1d")
            }
            guard let keepFulls = Int(keep) else { throw VaultError.invalid("\(place): keep-fulls is a number") }
            let policy: CopyPolicy
            do {
                policy = try CopyPolicy(vault: vault, to: to, everySeconds: Int(seconds), keepFulls: keepFulls)
            } catch let error as VaultError {
                throw VaultError.invalid("\(place): \(error.message)")
            }
            guard let target = entries.first(where: { $0.name == to }) else {
                throw VaultError.invalid(
                    "\(place): the copy of vault \(vault) goes to '\(to)', which is no location here")
            }
            guard target.mirrorOf != nil else {
                throw VaultError.invalid(
                    "\(place): the copy of vault \(vault) goes to '\(to)', which is no mirror (mirror-of): copies go only into a mirror location"
                )
            }
            guard !copies.contains(where: { $0.vault == vault }) else {
                throw VaultError.invalid("\(place): vault \(vault) has two copy policies")
            }
            copies.append(policy)
        }
        var inLocation = false
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line == "[[location]]" || line == "[[copy]]" {
                try finish()
                inLocation = line == "[[location]]"
                if !inLocation { current = (number, [:]) }
                continue
            }
            guard !inLocation, current != nil, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            let rest = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard ["vault", "to", "every", "keep-fulls"].contains(key) else {
                throw VaultError.invalid(
                    "\(path) line \(number): unknown key '\(key)' in a [[copy]] (known: vault, to, every, keep-fulls)")
            }
            guard current!.values[key] == nil else {
                throw VaultError.invalid("\(path) line \(number): '\(key)' is given twice")
            }
            current!.values[key] =
                key == "keep-fulls" ? Self.withoutComment(rest) : try Self.string(rest, at: "\(path) line \(number)")
        }
        try finish()
    }

    /// `value` without a trailing `# comment`.
    static func withoutComment(_ value: String) -> String {
        guard let hash = value.firstIndex(of: "#") else { return value }
        return value[..<hash].trimmingCharacters(in: .whitespaces)
    }

    /// A TOML basic or literal string that makes up the whole value (a comment may follow).
    static func string(_ value: String, at place: String) throws -> String {
        let scalars = Array(value.unicodeScalars)
        guard let quote = scalars.first, quote == "\"" || quote == "'" else {
            throw VaultError.invalid("\(place): a value is a \"quoted string\"")
        }
        var out = String.UnicodeScalarView()
        var i = 1
        while i < scalars.count {
            let c = scalars[i]
            if c == quote {
                let tail = String(String.UnicodeScalarView(scalars[(i + 1)...])).trimmingCharacters(in: .whitespaces)
                guard tail.isEmpty || tail.hasPrefix("#") else {
                    throw VaultError.invalid("\(place): something follows the string")
                }
                return String(out)
            }
            if c.value < 0x20 || c.value == 0x7f {
                throw VaultError.invalid("\(place): a control character in a string")
            }
            if c == "\\" && quote == "\"" {
                guard i + 1 < scalars.count else { break }
                i += 1
                switch scalars[i] {
                case "\"": out.append("\"")
                case "\\": out.append("\\")
                case "t": out.append("\t")
                case "n": out.append("\n")
                case "u", "U":
                    let width = scalars[i] == "u" ? 4 : 8
                    guard i + width < scalars.count,
                        let code = UInt32(String(String.UnicodeScalarView(scalars[(i + 1)...(i + width)])), radix: 16),
                        let scalar = Unicode.Scalar(code)
                    else { throw VaultError.invalid("\(place): a bad \\u escape") }
                    out.append(scalar)
                    i += width
                default: throw VaultError.invalid("\(place): an unknown escape \\\(scalars[i])")
                }
            } else {
                out.append(c)
            }
            i += 1
        }
        throw VaultError.invalid("\(place): a string is not closed")
    }
}
