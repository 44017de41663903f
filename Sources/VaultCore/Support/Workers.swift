import Dispatch
import Foundation
import Glibc

/// Runs `body(i)` for i in 0..<count, each on a thread of its own, and returns when all have
/// ended. Unlike `DispatchQueue.concurrentPerform`, which runs no more at once than there are
/// cores, every worker runs at once: for work that mostly waits on the network.
func runWorkers(_ count: Int, _ body: (Int) -> Void) {
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
            if pthread_create(&thread, nil, { context in
                let work = Unmanaged<Work>.fromOpaque(context!).takeRetainedValue()
                work.body(work.index)
                return nil
            }, work) == 0 {
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
    let body: (Int) -> Void
    let index: Int
    init(body: @escaping (Int) -> Void, index: Int) {
        self.body = body
        self.index = index
    }
}
