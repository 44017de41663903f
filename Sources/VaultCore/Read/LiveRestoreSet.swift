import Foundation
import Glibc
import Synchronization

/// The instant restores a mount serves: those of its repository that this host keeps,
/// looked at again each second, so a restore started by `vaultctl restore --instant` shows
/// and fills within a second, and one finished or cancelled lets its target go.
public final class LiveRestoreSet: Sendable {
    private let repository: Repository
    private let restores: InstantRestores
    private let cache: ChunkCache
    private let fillRate: Int64?
    private let log: @Sendable (String) -> Void
    private let live = Mutex<[String: LiveRestore]>([:])
    /// Problems already said, so each is said once, and when each restore that could not be
    /// served may be tried again.
    private let said = Mutex<Set<String>>([])
    private let retryAt = Mutex<[String: Date]>([:])
    private let refreshing = NSLock()
    private let stopped = Atomic<Bool>(false)
    /// How often the folder is looked at: a restore started shows within this.
    static let interval: useconds_t = 250_000

    public init(
        repository: Repository, restores: InstantRestores = .standard, cache: ChunkCache, fillRate: Int64? = nil,
        log: @escaping @Sendable (String) -> Void
    ) {
        self.repository = repository
        self.restores = restores
        self.cache = cache
        self.fillRate = fillRate
        self.log = log
    }

    /// Serves the restores there are now, and looks again every quarter second until
    /// `shutdown`, on a thread of its own: requests never wait for a restore to open or stop.
    public func start() {
        refresh()
        Thread.detachNewThread { [self] in
            while !stopped.load(ordering: .relaxed) {
                usleep(Self.interval)
                if !stopped.load(ordering: .relaxed) { refresh() }
            }
        }
    }

    /// The restores served now.
    public func current() -> [String: LiveRestore] { live.withLock { $0 } }

    public func refresh() {
        guard !stopped.load(ordering: .relaxed), refreshing.try() else { return }
        defer { refreshing.unlock() }
        let (records, problems) = restores.records(of: repository)
        for problem in problems { sayOnce(problem) }
        // Only a restore whose record is gone ends: a folder that cannot be read now (no
        // descriptors left, say) stops nothing.
        let ended = live.withLock { live -> [LiveRestore] in
            let ended = live.values.filter {
                var st = stat()
                return lstat(restores.recordPath($0.record.id), &st) != 0 && errno == ENOENT
            }
            for restore in ended { live[restore.record.id] = nil }
            return ended
        }
        for restore in ended {
            restore.stop()
            log("restore \(restore.record.id) ended: \(restore.record.target) is let go")
        }
        let now = Date()
        for record in records
        where live.withLock({ $0[record.id] == nil }) && retryAt.withLock({ ($0[record.id] ?? now) <= now }) {
            do {
                let restore = try LiveRestore.open(
                    record, restores: restores, repository: repository, cache: cache, log: log)
                live.withLock { $0[record.id] = restore }
                restore.startFilling(rate: fillRate)
                retryAt.withLock { $0[record.id] = nil }
                said.withLock { said in said = said.filter { !$0.hasPrefix("restore \(record.id) ") } }
                log(
                    "serving restore \(record.id): \(record.server)/\(record.pointName) disk \(record.disk) into \(record.target)"
                )
            } catch {
                // Served by another mount: asked again at the next look. Anything else (a
                // missing target, a damaged chunk map): again in 10 s, said once.
                let busy = (error as? VaultError)?.code == .busy
                retryAt.withLock { $0[record.id] = busy ? nil : now.addingTimeInterval(10) }
                sayOnce("restore \(record.id) cannot be served: \(error)")
            }
        }
    }

    private func sayOnce(_ problem: String) {
        if said.withLock({ $0.insert(problem).inserted }) { log(problem) }
    }

    /// Stops every filler and lets every target go.
    public func shutdown() {
        stopped.store(true, ordering: .relaxed)
        refreshing.lock()
        defer { refreshing.unlock() }
        let all = live.withLock { live -> [LiveRestore] in
            defer { live = [:] }
            return Array(live.values)
        }
        for restore in all { restore.stop() }
    }
}
