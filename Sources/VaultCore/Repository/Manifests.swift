import Foundation
import Logging

/// The manifests folder. Point manifests are written before the catalog commits a change
/// (the catalog transaction is the commit point); vault and server manifests after it.
struct ManifestStore: Sendable {
    let objects: any ObjectStore
    let sealer: Sealer?
    /// A manifest is a few kilobytes; anything past this is damaged.
    static let maxFileSize = 1 << 20
    static let folders = ["points", "vaults", "servers"]
    static let prefix = "manifests/"

    /// Prepares a store for manifests.
    static func prepare(_ objects: any ObjectStore) throws {
        try objects.prepare(prefixes: ["manifests"] + folders.map { "manifests/\($0)" })
    }

    private func key(_ folder: String, _ name: String) -> String { "\(Self.prefix)\(folder)/\(name).json" }
    private func path(_ folder: String, _ name: String) -> String { "\(objects.location)/\(key(folder, name))" }

    private func write<T: Encodable>(_ value: T, folder: String, name: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes: [UInt8]
        do { bytes = Array(try encoder.encode(value)) } catch {
            throw VaultError(.io, "cannot encode manifest \(name)", cause: error)
        }
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

    func write(_ manifest: PointManifest) throws { try write(manifest.file, folder: "points", name: manifest.point.id) }
    func remove(point id: String) throws { try objects.delete(key("points", id)) }

    func point(_ id: String) throws -> PointManifest? {
        guard let file = try read(PointManifest.File.self, folder: "points", name: id) else { return nil }
        return try PointManifest(file, path: path("points", id))
    }

    /// Every point manifest; a damaged one throws, naming its file.
    func allPoints() throws -> [PointManifest] {
        try names(in: "points").compactMap { try point($0) }
    }

    // MARK: Vaults and servers

    func write(_ manifest: VaultManifest) throws { try write(manifest.file, folder: "vaults", name: manifest.name) }
    func write(_ manifest: ServerManifest) throws { try write(manifest.file, folder: "servers", name: manifest.name) }
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
        guard let file = try read(VaultManifest.File.self, folder: "vaults", name: name) else { return nil }
        return try VaultManifest(file, name: name, path: path("vaults", name))
    }

    /// The manifest of server `name`, checked; nil when there is none.
    func server(_ name: String) throws -> ServerManifest? {
        guard let file = try read(ServerManifest.File.self, folder: "servers", name: name) else { return nil }
        return try ServerManifest(file, name: name, path: path("servers", name))
    }

    // MARK: Other hosts

    /// What changed in a shared store: the manifests whose tag differs from `seen` (key ->
    /// tag), decoded, and the tags of every manifest there now. One that cannot be read is
    /// left out of both, so it is tried again next time.
    func changed(since seen: [String: String]) throws
        -> (vaults: [VaultManifest], servers: [ServerManifest], points: [PointManifest], tags: [String: String])
    {
        var vaults: [VaultManifest] = []
        var servers: [ServerManifest] = []
        var points: [PointManifest] = []
        var tags: [String: String] = [:]
        for object in try objects.list(prefix: Self.prefix) {
            guard let tag = object.tag else { continue }
            let parts = object.key.dropFirst(Self.prefix.count).split(separator: "/")
            guard parts.count == 2, parts[1].hasSuffix(".json") else { continue }
            let name = String(parts[1].dropLast(5))
            if seen[object.key] == tag {
                tags[object.key] = tag
                continue
            }
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
