import Dispatch
import Foundation
import Glibc
import Synchronization

/// Runs `body(i)` for i in 0..<count, each on a thread of its own, and returns when all have
/// ended. Unlike `DispatchQueue.concurrentPerform`, which runs no more at once than there are
/// cores, every worker runs at once: for work that mostly waits on the network.
func runWorkers(_ count: Int, _ body: @Sendable (Int) -> Void) {
    if count <= ProcessInfo.processInfo.activeProcessorCount {
        DispatchQueue.concurrentPerform(iterations: count, execute: body)
        return
    }
    // Every thread is joined, and has dropped its reference to `body`, before this returns.
    withoutActuallyEscaping(body) { body in
        var threads: [pthread_t] = []
        for i in 0..<count {
            let work = Unmanaged.passRetained(Work(body: body, index: i)).toOpaque()
            var thread = pthread_t()
            if pthread_create(
                &thread, nil,
                { context in
                    let work = Unmanaged<Work>.fromOpaque(context!).takeRetainedValue()
                    work.body(work.index)
                    return nil
                }, work) == 0
            {
                threads.append(thread)
            } else {
                // No thread to be had: this one does the work.
                let work = Unmanaged<Work>.fromOpaque(work).takeRetainedValue()
                work.body(work.index)
            }
        }
        for thread in threads { pthread_join(thread, nil) }
    }
}

/// What one worker thread runs.
private final class Work {
    let body: @Sendable (Int) -> Void
    let index: Int
    init(body: @escaping @Sendable (Int) -> Void, index: Int) {
        self.body = body
        self.index = index
    }
}

/// A fixed number of threads of its own that run submitted jobs in order of submission,
/// started at the first job and ended when the pool goes. For background work that waits on
/// the network, where a dispatch queue would run no more at once than there are cores.
final class WorkerPool: Sendable {
    /// What the threads share; they hold it, not the pool, so the pool can go.
    private final class Queue: Sendable {
        struct State {
            var jobs: [@Sendable () -> Void] = []
            var next = 0
            var closed = false
        }

        let state = Mutex(State())
        let ready = DispatchSemaphore(value: 0)

        /// Runs jobs until the queue is closed and empty.
        func run() {
            while true {
                ready.wait()
                let job = state.withLock { state -> (@Sendable () -> Void)?? in
                    guard state.next < state.jobs.count else { return state.closed ? .some(nil) : nil }
                    let job = state.jobs[state.next]
                    state.next += 1
                    if state.next == state.jobs.count {
                        state.jobs.removeAll(keepingCapacity: true)
                        state.next = 0
                    }
                    return job
                }
                switch job {
                case .some(.some(let job)): job()
                case .some(.none): return
                case .none: continue
                }
            }
        }
    }

    private let threads: Int
    private let queue = Queue()
    private let started = Atomic<Bool>(false)

    init(threads: Int) { self.threads = max(1, threads) }

    deinit {
        guard started.load(ordering: .acquiring) else { return }
        queue.state.withLock { $0.closed = true }
        for _ in 0..<threads { queue.ready.signal() }
    }

    /// Runs `job` on one of the pool's threads, without waiting for it.
    func submit(_ job: @escaping @Sendable () -> Void) {
        queue.state.withLock { $0.jobs.append(job) }
        if !started.exchange(true, ordering: .acquiringAndReleasing) {
            for _ in 0..<threads {
                let thread = Thread { [queue] in queue.run() }
                thread.name = "vaultfs.worker"
                thread.start()
            }
        }
        queue.ready.signal()
    }
}
