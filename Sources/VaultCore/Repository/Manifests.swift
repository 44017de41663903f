import Foundation
import Logging

/// Everything the catalog knows of one point, kept in the repository so that the repository
/// alone is enough to restore: `manifests/points/<id>.json`.
struct PointManifest: Codable, Sendable, Equatable {
    static let format = 1
    var format = Self.format
    var point: Point
    var tags: [PointTag]
    var disks: [PointDisk]

    /// Whether this says the point is stored and restorable (its chunks must be kept).
    var isLive: Bool { point.status == .active && point.deletion != .deleted }
}

/// A vault and its policy: `manifests/vaults/<name>.json`.
struct VaultManifest: Codable, Sendable {
    var format = PointManifest.format
    var vault: Vault
}

/// A server, its vault (by name), hooks and disks: `manifests/servers/<name>.json`.
struct ServerManifest: Codable, Sendable {
    var format = PointManifest.format
    var server: Server
    var vault: String?
    var disks: [Disk]
}

/// The manifests folder. Point manifests are written before the catalog commits a change
/// (the catalog transaction is the commit point); vault and server manifests after it.
struct ManifestStore: Sendable {
    let objects: any ObjectStore
    let sealer: Sealer?
    /// A manifest is a few kilobytes; anything past this is damaged.
    static let maxFileSize = 1 << 20
    static let folders = ["points", "vaults", "servers"]
    static let prefix = "manifests/"

    /// Creates the manifest folders of a repository in a folder.
    static func create(in directory: DirectoryStore) throws {
        try Posix.makeDirectory(directory.path("manifests"), mode: directory.modes.directory)
        for folder in folders { try Posix.makeDirectory(directory.path("manifests/\(folder)"), mode: directory.modes.directory) }
    }

    private func key(_ folder: String, _ name: String) -> String { "\(Self.prefix)\(folder)/\(name).json" }
    private func path(_ folder: String, _ name: String) -> String { "\(objects.location)/\(key(folder, name))" }

    private func write<T: Encodable>(_ value: T, folder: String, name: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes: [UInt8]
        do { bytes = Array(try encoder.encode(value)) } catch { throw VaultError(.io, "cannot encode manifest \(name)", cause: error) }
        try objects.put(key(folder, name), sealer.sealFile(bytes, context: "manifest \(folder)/\(name)"), durable: true)
    }

    private func read<T: Decodable>(_ type: T.Type, folder: String, name: String) throws -> T? {
        let file = path(folder, name)
        guard let bytes = try objects.get(key(folder, name), limit: Self.maxFileSize) else { return nil }
        let plain = try sealer.openFile(bytes, context: "manifest \(folder)/\(name)", what: "manifest \(file)")
        do {
            return try JSONDecoder().decode(type, from: Data(plain))
        } catch {
            throw VaultError(.corrupt, "manifest \(file) is damaged: it does not decode")
        }
    }

    private func names(in folder: String) throws -> [String] {
        let prefix = "\(Self.prefix)\(folder)/"
        return try objects.list(prefix: prefix).map { String($0.key.dropFirst(prefix.count)) }
            .filter { $0.hasSuffix(".json") && !$0.contains("/") }.map { String($0.dropLast(5)) }.sorted()
    }

    // MARK: Points

    func write(_ manifest: PointManifest) throws { try write(manifest, folder: "points", name: manifest.point.id) }
    func remove(point id: String) throws { try objects.delete(key("points", id)) }

    func point(_ id: String) throws -> PointManifest? {
        guard let manifest = try read(PointManifest.self, folder: "points", name: id) else { return nil }
        try Self.check(manifest, file: path("points", id))
        return manifest
    }

    /// Every point manifest; a damaged one throws, naming its file.
    func allPoints() throws -> [PointManifest] {
        try names(in: "points").compactMap { try point($0) }
    }

    /// The times a manifest may hold: years 1900 to 9999. Others cannot be stored in the
    /// catalog and read back, so one would make every read of its table fail.
    static let times = Date(timeIntervalSince1970: -2_208_988_800)...Date(timeIntervalSince1970: 253_402_300_799)

    /// Whether every time given is one a manifest may hold.
    static func areTimes(_ dates: Date?...) -> Bool { dates.allSatisfy { $0.map(times.contains) ?? true } }

    /// Checks what a manifest says against what a repository allows, so a damaged one that
    /// still parses is refused rather than trusted.
    static func check(_ manifest: PointManifest, file: String) throws {
        func bad(_ why: String) -> VaultError { VaultError(.corrupt, "manifest \(file) is damaged: \(why)") }
        guard manifest.format == PointManifest.format else { throw bad("unknown format \(manifest.format)") }
        let point = manifest.point
        guard file.hasSuffix("/\(point.id).json"), UUID(uuidString: point.id) != nil else { throw bad("its point id does not match its name") }
        guard (try? Names.validatePointName(point.name)) != nil, !point.serverName.isEmpty else { throw bad("bad point or server name") }
        guard manifest.disks.count <= 256, manifest.tags.count <= 10 else { throw bad("too many disks or tags") }
        for disk in manifest.disks {
            // Plain comparisons: a range built from a damaged size could itself trap.
            guard disk.pointId == point.id, disk.size >= 0, disk.size <= ChunkMap.maxDiskSize,
                  disk.dataBytes >= 0, disk.dataBytes <= disk.size, disk.changedBytes >= 0, disk.changedBytes <= disk.size,
                  disk.newBytes >= 0, (try? Names.validateDisk(disk.disk)) != nil else { throw bad("bad disk record '\(disk.disk)'") }
        }
        for tag in manifest.tags where tag.pointId != point.id { throw bad("a tag of another point") }
        guard areTimes(point.slot, point.startedAt, point.finishedAt, point.deletedAt) else { throw bad("a time out of range") }
        guard point.progressDone >= 0, point.progressTotal >= 0 else { throw bad("negative progress") }
        if let parent = point.parentId, UUID(uuidString: parent) == nil { throw bad("bad parent id") }
    }

    // MARK: Vaults and servers

    func write(_ manifest: VaultManifest) throws { try write(manifest, folder: "vaults", name: manifest.vault.name) }
    func write(_ manifest: ServerManifest) throws { try write(manifest, folder: "servers", name: manifest.server.name) }
    func removeVault(_ name: String) throws { try objects.delete(key("vaults", name)) }
    func removeServer(_ name: String) throws { try objects.delete(key("servers", name)) }

    func allVaults() throws -> [VaultManifest] {
        try names(in: "vaults").compactMap { try vault($0) }
    }

    func allServers() throws -> [ServerManifest] {
        try names(in: "servers").compactMap { try server($0) }
    }

    /// The manifest of vault `name`, checked; nil when there is none.
    func vault(_ name: String) throws -> VaultManifest? {
        guard let manifest = try read(VaultManifest.self, folder: "vaults", name: name) else { return nil }
        try Self.check(manifest, name: name, file: path("vaults", name))
        return manifest
    }

    /// The manifest of server `name`, checked; nil when there is none.
    func server(_ name: String) throws -> ServerManifest? {
        guard let manifest = try read(ServerManifest.self, folder: "servers", name: name) else { return nil }
        try Self.check(manifest, name: name, file: path("servers", name))
        return manifest
    }

    /// Checks every field of a vault manifest: a policy out of range would make the
    /// scheduler and retention of every vault fail, so the file is refused with its name.
    static func check(_ manifest: VaultManifest, name: String, file: String) throws {
        func bad(_ why: String) -> VaultError { VaultError(.corrupt, "manifest \(file) is damaged: \(why)") }
        guard manifest.format == PointManifest.format else { throw bad("unknown format \(manifest.format)") }
        guard manifest.vault.name == name else { throw bad("it names vault '\(manifest.vault.name)'") }
        guard (try? Names.validateVaultOrServer(name, what: "vault")) != nil else { throw bad("bad vault name") }
        let vault = manifest.vault
        guard areTimes(vault.createdAt, vault.policySince) else { throw bad("a time out of range") }
        let fields = [vault.policyStartMinute, vault.policyEveryHours, vault.policyIncrementals, vault.policyKeepFulls]
        let hasPolicy = fields.contains { $0 != nil } || vault.policySince != nil
        if hasPolicy && vault.policy == nil {
            // `policy` is nil for a missing value or one out of range: say which.
            let given = Policy(startMinute: vault.policyStartMinute ?? -1, everyHours: vault.policyEveryHours ?? 0,
                               incrementals: vault.policyIncrementals ?? -1, keepFulls: vault.policyKeepFulls ?? 0,
                               since: vault.policySince ?? Date())
            throw bad("its policy is impossible: \(fields.contains(nil) || vault.policySince == nil ? "a value is missing" : given.problem ?? "")")
        }
    }

    /// Checks every field of a server manifest.
    static func check(_ manifest: ServerManifest, name: String, file: String) throws {
        func bad(_ why: String) -> VaultError { VaultError(.corrupt, "manifest \(file) is damaged: \(why)") }
        guard manifest.format == PointManifest.format else { throw bad("unknown format \(manifest.format)") }
        guard manifest.server.name == name else { throw bad("it names server '\(manifest.server.name)'") }
        guard (try? Names.validateVaultOrServer(name, what: "server")) != nil else { throw bad("bad server name") }
        guard areTimes(manifest.server.createdAt) else { throw bad("a time out of range") }
        if let vault = manifest.vault, (try? Names.validateVaultOrServer(vault, what: "vault")) == nil { throw bad("bad vault name") }
        do {
            try Names.validateDisks(manifest.disks.map { (name: $0.name, path: $0.path) }, server: name)
        } catch let error as VaultError {
            throw bad(error.message)
        }
    }

    // MARK: Other hosts

    /// What changed in a shared store: the manifests whose tag differs from `seen` (key ->
    /// tag), decoded, and the tags of every manifest there now. One that cannot be read is
    /// left out of both, so it is tried again next time.
    func changed(since seen: [String: String]) throws
        -> (vaults: [VaultManifest], servers: [ServerManifest], points: [PointManifest], tags: [String: String]) {
        var vaults: [VaultManifest] = [], servers: [ServerManifest] = [], points: [PointManifest] = []
        var tags: [String: String] = [:]
        for object in try objects.list(prefix: Self.prefix) {
            guard let tag = object.tag else { continue }
            let parts = object.key.dropFirst(Self.prefix.count).split(separator: "/")
            guard parts.count == 2, parts[1].hasSuffix(".json") else { continue }
            let name = String(parts[1].dropLast(5))
            if seen[object.key] == tag { tags[object.key] = tag; continue }
            switch parts[0] {
            case "points":
                guard let manifest = checked({ try point(name) }) else { continue }
                points.append(manifest)
            case "vaults":
                guard let manifest = checked({ try vault(name) }) else { continue }
                vaults.append(manifest)
            case "servers":
                guard let manifest = checked({ try server(name) }) else { continue }
                servers.append(manifest)
            default:
                continue
            }
            tags[object.key] = tag
        }
        return (vaults, servers, points, tags)
    }

    /// What `read` gives; nil, with a warning naming why, when it throws: one damaged file
    /// of another host is left out, and the rest of the store is taken in.
    private func checked<T>(_ read: () throws -> T?) -> T? {
        do {
            return try read()
        } catch {
            Logger(label: "vaultfs.repository").warning("\(error); left out until it is fixed")
            return nil
        }
    }
}
