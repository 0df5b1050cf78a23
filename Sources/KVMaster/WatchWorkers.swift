import Foundation

/// A few threads that finish parked requests (`WatchHub`): a woken blocking query's read and answer, a stream's
/// writes. Fixed in number, whatever the number of waiters; jobs run in the order they were submitted, each on
/// whichever thread is free (a stream orders its own writes, see `WatchStream`).
final class WatchWorkers: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [() -> Void] = []
    private var head = 0

    init(threads: Int, name: String) {
        for index in 0..<max(1, threads) {
            let thread = Thread { [self] in run() }
            thread.name = "\(name)-\(index)"
            thread.stackSize = 512 << 10
            thread.start()
        }
    }

    func submit(_ job: @escaping () -> Void) {
        condition.lock()
        queue.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while head == queue.count { condition.wait() }
            let job = queue[head]
            head += 1
            // Reclaim the taken prefix once it is as large as what waits (amortized O(1) per job).
            if head >= 1024 && head * 2 >= queue.count {
                queue.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }
}
