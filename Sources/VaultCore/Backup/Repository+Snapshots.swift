import Foundation

extension Repository {
    /// Removes the `vaultfs-<point>` snapshots of this host's `rbd:` disks, and the dirty
    /// bitmaps of its NBD disks, that no point of this repository can start an incremental
    /// from any more: those of failed, killed, deleted and superseded points. Those of points
    /// this repository does not know (another repository's) and those vaultfs did not make
    /// stay. A cluster or qemu that does not answer is a problem line, never an error: the
    /// chunks are collected all the same. `vaultctl gc` runs it after collecting, once
    /// interrupted backups are recorded as failed.
    public func tidyDiskSnapshots(host: HostServers = .standard, dryRun: Bool) -> GarbageCollector.SnapshotTidying {
        var result = GarbageCollector.SnapshotTidying()
        let servers: [Server]
        do { servers = try catalog.servers() } catch {
            result.problems.append("cannot list the servers for their snapshots: \(error)")
            return result
        }
        for server in servers {
            guard let here = try? hostServer(server.name, host: host) else { continue }
            let tracked = here.disks.filter {
                (try? RbdSpec(source: $0.path)) != nil || ((try? NbdSpec(source: $0.path)) != nil && here.bitmap != nil)
            }
            guard !tracked.isEmpty else { continue }
            // Not while the server is being backed up: its backup's snapshot, export and
            // bitmaps are in use.
            guard let lock = try? lockServer(server.id, name: server.name) else {
                result.problems.append(
                    "server '\(server.name)' is being backed up: its snapshots are left for the next gc")
                continue
            }
            defer { _ = lock }
            let points: [Point]
            do { points = try catalog.allPoints(server: server.id) } catch {
                result.problems.append("cannot list the points of server '\(server.name)': \(error)")
                continue
            }
            let kept = KeptPoints(points)
            for disk in tracked {
                do {
                    let origin = try Self.diskOrigin(disk.name, path: disk.path, server: server.name, here: here)
                    let doomed = try origin.doomed(kept)
                    if doomed.isEmpty { continue }
                    if !dryRun {
                        let problems = origin.tidy(kept)
                        result.problems += problems
                        if !problems.isEmpty { continue }
                    }
                    result.removed += doomed
                } catch {
                    result.problems.append("\(error)")
                }
            }
        }
        return result
    }
}
