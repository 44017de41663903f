import Dispatch
import Foundation
import Glibc
import Synchronization

/// A lease held through the object store, for what must run on one host at a time across
/// every host that shares a bucket (one backup of a server).
///
/// Its generations only grow: `locks/<name>/<generation>` (20 digits) holds who wrote it and
/// when it expires. The newest generation decides. A live one written by someone else means
/// busy; otherwise the next generation is written with a conditional PUT, and of any number
/// of racers exactly one wins it. The holder renews every third of the lifetime by writing the
/// next generation the same way; if that loses, the lease expired and another host took it,
/// so the holder is told (`isLost`) and stops. Releasing writes a generation that has already
/// expired. Hosts' clocks must agree to well within the lifetime (two minutes).
public final class ObjectLease: Sendable {
    struct Record: Codable {
        var owner: String
        /// Seconds since 1970 after which the lease is free.
        var expires: Double
        /// The writer's host (the id of its state folder) and process: a lease of this host
        /// whose process is gone is free at once, without waiting for it to expire.
        var host: String?
        var pid: Int32?
    }

    static let prefix = "locks/"
    let objects: any ObjectStore
    let folder: String
    let owner: String
    let host: String
    let lifetime: Double
    /// The newest generation written, when it expires, and whether the lease was lost or given up.
    private let state: Mutex<(generation: UInt64, expires: Double, lost: Bool, released: Bool)>
    private let renewal: Mutex<DispatchSourceTimer?> = Mutex(nil)

    private init(
        objects: any ObjectStore, folder: String, owner: String, host: String, lifetime: Double, generation: UInt64,
        expires: Double
    ) {
        self.objects = objects
        self.folder = folder
        self.owner = owner
        self.host = host
        self.lifetime = lifetime
        state = Mutex((generation, expires, false, false))
    }

    deinit { release() }

    /// Takes the lease `name` for this host (`host`: an id unique to it), or returns nil when
    /// a live lease of someone else holds it (`holder` then says who).
    static func acquire(
        _ objects: any ObjectStore, name: String, host: String, lifetime: Double = 120,
        holder: inout String?
    ) throws -> ObjectLease? {
        let folder = "\(prefix)\(name)/"
        let owner = "\(ProcessInfo.processInfo.hostName) pid \(getpid())"
        let newest = try objects.list(prefix: folder).compactMap { UInt64($0.key.dropFirst(folder.count)) }.max()
        if let newest, let owner = try liveOwner(objects, key: key(folder, newest), host: host) {
            holder = owner
            return nil
        }
        let generation = (newest ?? 0) + 1
        let record = Record(owner: owner, expires: Date().timeIntervalSince1970 + lifetime, host: host, pid: getpid())
        guard try objects.putIfAbsent(key(folder, generation), try encode(record)) else {
            holder = "another host that took it at the same moment"
            return nil
        }
        let lease = ObjectLease(
            objects: objects, folder: folder, owner: owner, host: host, lifetime: lifetime, generation: generation,
            expires: record.expires)
        lease.startRenewing()
        try? lease.removeOlder(than: generation)
        return lease
    }

    /// Who holds the lease `name` now, when someone does: the owner of its newest
    /// generation, unless that has expired or was a process of this host that is gone.
    static func holder(_ objects: any ObjectStore, name: String, host: String) throws -> String? {
        let folder = "\(prefix)\(name)/"
        guard let newest = try objects.list(prefix: folder).compactMap({ UInt64($0.key.dropFirst(folder.count)) }).max()
        else { return nil }
        return try liveOwner(objects, key: key(folder, newest), host: host)
    }

    /// The owners of every live lease below `locks/<under>` (one per name); leases of this
    /// host's processes that are gone do not count.
    static func liveHolders(_ objects: any ObjectStore, under: String, host: String) throws -> [String] {
        var newest: [String: UInt64] = [:]
        for object in try objects.list(prefix: "\(prefix)\(under)") {
            let parts = object.key.split(separator: "/")
            guard let generation = parts.last.flatMap({ UInt64($0) }) else { continue }
            let folder = parts.dropLast().joined(separator: "/") + "/"
            newest[folder] = max(newest[folder] ?? 0, generation)
        }
        return try newest.compactMap { folder, generation in
            try liveOwner(objects, key: key(folder, generation), host: host)
        }
    }

    /// The owner written in `key` when that lease is live. With `host`, a lease of this host
    /// whose process is gone counts as free.
    private static func liveOwner(_ objects: any ObjectStore, key: String, host: String?) throws -> String? {
        guard let bytes = try objects.get(key, limit: 4096),
            let record = try? JSONDecoder().decode(Record.self, from: Data(bytes)),
            record.expires > Date().timeIntervalSince1970
        else { return nil }
        if let host, record.host == host, let pid = record.pid, kill(pid, 0) != 0 && errno == ESRCH { return nil }
        return record.owner
    }

    static func key(_ folder: String, _ generation: UInt64) -> String {
        let digits = String(generation)
        return folder + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    static func encode(_ record: Record) throws -> [UInt8] { Array(try JSONEncoder().encode(record)) }

    /// True once another host took the lease, or once the last generation written is within
    /// a tenth of its lifetime of expiring (renewals could not reach the store): stop what it
    /// guards, since another host may take it at any moment.
    public var isLost: Bool {
        state.withLock { $0.lost || Date().timeIntervalSince1970 > $0.expires - lifetime / 10 }
    }

    private func startRenewing() {
        let every = lifetime / 3
        // Made under the lock and kept there: only the lock's holder touches the timer.
        renewal.withLock { renewal in
            let timer = DispatchSource.makeTimerSource(queue: .global())
            timer.schedule(deadline: .now() + every, repeating: every)
            timer.setEventHandler { [weak self] in self?.renew() }
            timer.resume()
            renewal = timer
        }
    }

    /// Writes the next generation, live for another lifetime. A lease that came near its
    /// expiry unrenewed is lost for good, even if nobody took it: another host may have
    /// seen it expired and gone ahead (a collection only reads the servers' leases).
    private func renew() {
        let now = Date().timeIntervalSince1970
        let current = state.withLock { state -> (generation: UInt64, expires: Double)? in
            guard !state.released, !state.lost else { return nil }
            if now > state.expires - lifetime / 10 {
                state.lost = true
                return nil
            }
            return (state.generation, state.expires)
        }
        guard let (current, expires) = current else { return }
        let record = Record(owner: owner, expires: now + lifetime, host: host, pid: getpid())
        do {
            if try objects.putIfAbsent(Self.key(folder, current + 1), try Self.encode(record)) {
                state.withLock {
                    $0.generation = current + 1
                    $0.expires = record.expires
                    // Written only after the old generation had expired: lost all the same.
                    if Date().timeIntervalSince1970 > expires - lifetime / 10 { $0.lost = true }
                }
                try? removeOlder(than: current + 1)
            } else {
                state.withLock { $0.lost = true }
            }
        } catch {
            // The store is away: try again at the next tick; the lease lasts until it expires.
        }
    }

    /// Removes generations below `generation` (they only make listings longer).
    private func removeOlder(than generation: UInt64) throws {
        for object in try objects.list(prefix: folder) {
            if let g = UInt64(object.key.dropFirst(folder.count)), g < generation { try objects.delete(object.key) }
        }
    }

    /// Gives the lease up now: the next generation, already expired.
    public func release() {
        renewal.withLock { timer in
            timer?.cancel()
            timer = nil
        }
        let current = state.withLock { state -> UInt64? in
            defer { state.released = true }
            return state.released || state.lost ? nil : state.generation
        }
        guard let current else { return }
        if let record = try? Self.encode(Record(owner: owner, expires: 0, host: host, pid: getpid())),
            (try? objects.putIfAbsent(Self.key(folder, current + 1), record)) == true
        {
            try? removeOlder(than: current + 1)
        }
    }
}
