import Foundation

/// Which points a listing shows and which page of them, from text as a URL's query gives it
/// (the console and its API): every value is checked here, and a bad one is refused with a
/// line naming it, so no caller can pass a listing something it cannot mean.
public struct PointQuery: Sendable, Equatable {
    public var server: String?
    public var filter = PointFilter()
    public var schedule: ScheduleType?
    /// The status as listings show it: Active, Error or Creating.
    public var status: PointStatus?
    public var tag: Tag?
    /// Soft-deleted points too (history always has them).
    public var includeDeleted = false
    public var offset = 0
    public var limit = PointQuery.defaultLimit

    public struct Tag: Sendable, Equatable {
        public var key: String
        /// Any value when nil.
        public var value: String?
    }

    public static let defaultLimit = 100
    public static let maximumLimit = 1000
    /// The names a query may have; any other is refused, so a misspelt filter never shows
    /// every point as if it had applied.
    public static let names: Set<String> = [
        "server", "vault", "type", "schedule", "status", "tag", "since", "before", "deleted", "offset", "limit",
    ]

    public init() {}

    /// A query from `fields` (each name once); empty values count as absent.
    public init(fields: [String: String], now: Date = Date()) throws {
        for name in fields.keys where !Self.names.contains(name) {
            throw VaultError.invalid(
                "unknown filter '\(name)': use \(Self.names.sorted().joined(separator: ", "))")
        }
        func given(_ name: String) -> String? { fields[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let server = given("server") {
            try Names.validateVaultOrServer(server, what: "server")
            self.server = server
        }
        if let vault = given("vault") {
            try Names.validateVaultOrServer(vault, what: "vault")
            filter.vault = vault
        }
        filter.kind = try given("type").map { text in
            guard let kind = PointKind(rawValue: text.lowercased()) else {
                throw VaultError.invalid("bad type '\(text)': use full or incremental")
            }
            return kind
        }
        schedule = try given("schedule").map { text in
            guard let schedule = ScheduleType(rawValue: text.lowercased()) else {
                throw VaultError.invalid("bad schedule '\(text)': use policy or manual")
            }
            return schedule
        }
        status = try given("status").map(Self.status)
        tag = try given("tag").map { text in
            let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let key = parts.first, !key.isEmpty, key.count <= 128 else {
                throw VaultError.invalid("bad tag '\(text)': use KEY or KEY=VALUE")
            }
            return Tag(key: key, value: parts.count == 2 ? parts[1] : nil)
        }
        filter.since = try given("since").map { try Units.parseMoment($0, now: now) }
        filter.before = try given("before").map { try Units.parseMoment($0, now: now) }
        includeDeleted =
            try given("deleted").map { text in
                guard let value = ["true": true, "false": false, "1": true, "0": false][text.lowercased()] else {
                    throw VaultError.invalid("bad deleted '\(text)': use true or false")
                }
                return value
            } ?? false
        offset = try given("offset").map { try Units.wholeNumber($0, name: "offset", in: 0...Int(Int32.max)) } ?? 0
        limit =
            try given("limit").map { try Units.wholeNumber($0, name: "limit", in: 1...Self.maximumLimit) }
            ?? Self.defaultLimit
    }

    /// A status word as listings print it (`Active`, `Error`, `Creating`), any case.
    static func status(_ text: String) throws -> PointStatus {
        switch text.lowercased() {
        case "active": return .active
        case "error", "failed": return .failed
        case "creating": return .creating
        default: throw VaultError.invalid("bad status '\(text)': use Active, Error or Creating")
        }
    }

}

/// One page of a listing of points: the views on it, and how many match in all.
public struct PointPage: Codable, Sendable {
    public var total: Int
    public var offset: Int
    public var limit: Int
    public var points: [PointView]
}

extension Repository {
    /// The points `query` asks for, newest first, as one page. `history` lists every attempt
    /// (failed and deleted points too), as `history` does; otherwise what `points` lists.
    /// Only the page's points are turned into views, so a page of 10,000 points costs the
    /// rows and a hundred views.
    public func page(_ query: PointQuery, history: Bool = false) throws -> PointPage {
        var selection = PointSelection()
        selection.server = try query.server.map { try catalog.server(named: $0).id }
        if let vault = query.filter.vault { _ = try catalog.vault(named: vault) }
        selection.filter = query.filter
        selection.schedule = query.schedule
        selection.status = query.status
        selection.tagKey = query.tag?.key
        selection.tagValue = query.tag?.value
        selection.history = history
        selection.includeSoftDeleted = query.includeDeleted
        let (total, points) = try catalog.pointPage(selection, offset: query.offset, limit: query.limit)
        return PointPage(total: total, offset: query.offset, limit: query.limit, points: try views(of: points))
    }

    /// A point and the points it is rebuilt from, itself first, back to its full.
    public func chain(of point: Point) throws -> [Point] {
        var chain = [point]
        var seen: Set<String> = [point.id]
        while let parent = chain.last?.parentId, !seen.contains(parent), let found = try catalog.point(id: parent) {
            chain.append(found)
            seen.insert(parent)
        }
        return chain
    }
}
