import Foundation
import Hummingbird
import VaultCore

/// Restores from the console: onto the disks this host backs the point's server up from, and
/// nowhere else (`vaultctl restore --to` restores anywhere; a token must not write wherever it
/// names). Diff-only, or instant through a running mount of the repository, as the commands.
struct RestoreRequest: RequestFields {
    var disk: String?
    var instant: Bool?
    var fromPoint: String?
    static let fields = ["disk", "instant", "fromPoint"]
}

/// How an instant restore ended through the console.
struct RestoreEndView: Codable {
    var id: String
    var target: String
    var outcome: String
    var filledBytes: Int64
    var size: Int64
}

extension Console {
    /// The path this host reads `disk` of `server` from, when it backs that server up into
    /// this repository: the one target the console restores to.
    func hostTarget(server: String, disk: String) throws -> String {
        let here: HostServer?
        do {
            here = try HostServers.standard.server(server)
        } catch {
            throw WebError(.conflict, "this host's configuration of server \(server) cannot be read: \(error)")
        }
        guard let here, here.repository == repository.config.id else {
            throw WebError(
                .conflict,
                "server \(server) is not backed up from this host: the console restores onto the disks this host backs up ('vaultctl restore --to' restores anywhere)"
            )
        }
        guard let path = here.disks.first(where: { $0.name == disk })?.path, path.hasPrefix("/") else {
            throw WebError(.conflict, "this host backs up no disk \(disk) of server \(server) from a path")
        }
        return path
    }

    func restoreStatuses() -> [InstantRestoreStatus] {
        let restores = InstantRestores.standard
        return restores.records(of: repository).records.map { restores.status(of: $0) }
    }

    /// Starts an instant restore (202, with where a mount serves its image), or runs a
    /// diff-only one to its end (200, with what it wrote).
    func restore(point reference: String, _ body: RestoreRequest) async throws -> Response {
        let (point, disk, target) = try await blocking {
            let point = try self.readablePoint(reference).point
            let source = try self.repository.exportSource(point: point.id, disk: body.disk)
            return (source.point, source.disk, try self.hostTarget(server: source.point.serverName, disk: source.disk))
        }
        let restores = InstantRestores.standard
        if body.instant == true {
            guard body.fromPoint == nil else {
                throw WebError(.badRequest, "an instant restore fills the whole target; it takes no fromPoint")
            }
            let view = try await blocking {
                let record = try self.repository.startInstantRestore(
                    point: point, disk: disk, to: target, restores: restores)
                _ = restores.record(RestoreHistoryEntry(record, outcome: .started))
                let image = InstantRestoreMounts.image(of: record, repository: self.repository, mount: nil)
                return InstantRestoreView(record: record, image: image, status: restores.status(of: record))
            }
            return json(view, status: .accepted)
        }
        let view = try await maintain("a restore") {
            let base = try body.fromPoint.map { try self.readablePoint($0).point }
            do {
                let report = try self.repository.restore(
                    point: point, disk: disk, to: try RestoreTarget.open(target), base: base, cache: self.cache)
                _ = restores.record(RestoreHistoryEntry(report))
                return RestoreView(report)
            } catch {
                var entry = RestoreHistoryEntry(
                    kind: base == nil ? .compare : .fromPoint, outcome: .failed, point: point, disk: disk,
                    target: target, size: 0)
                entry.fromPoint = base?.id
                entry.error = "\(error)"
                _ = restores.record(entry)
                throw error
            }
        }
        return json(view)
    }

    /// Finishes (or cancels) an instant restore, as `restore finish` (`cancel`) does.
    func endRestore(_ id: String, cancel: Bool) throws -> RestoreEndView {
        guard id.count >= 4, id.count <= 64, id.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
            throw VaultError(.invalidArgument, "bad restore '\(id)': give its id, or 4 or more of its first characters")
        }
        let restores = InstantRestores.standard
        let record = try restores.record(id, of: repository)
        let filled = try restores.end(record, cancel: cancel, repository: repository)
        return RestoreEndView(
            id: record.id, target: record.target, outcome: cancel ? "cancelled" : "finished", filledBytes: filled,
            size: record.size)
    }

    func addRestores(to api: Routes) {
        api.get("restores") { request, _ in
            try Query.refuseFields(request)
            return json(try await self.blocking { self.restoreStatuses() })
        }
        api.post("points/:point/restore") { request, context in
            let reference = try Self.parameter(context, "point")
            return try await self.restore(
                point: reference, try await Self.decode(RestoreRequest.self, request, context))
        }
        for (action, cancel) in [("finish", false), ("cancel", true)] {
            api.post("restores/:restore/\(action)") { request, context in
                let id = try Self.parameter(context, "restore")
                try await Self.refuseBody(request, context)
                return json(try await self.blocking { try self.endRestore(id, cancel: cancel) })
            }
        }
    }
}
