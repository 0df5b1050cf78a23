import Foundation
import Logging

/// Group commit over a `LogFile`: callers hand in records with a completion; one writer thread appends
/// everything queued, issues a single fdatasync for the batch, then runs the completions in order.
///
/// Guarantee: a completion runs only after its records (and every record queued before them) are on stable
/// storage. A failed write or fsync stops the process: after a failed fsync the kernel may have dropped the
/// dirty pages, so retrying could report success for data that is gone (PostgreSQL's "fsyncgate").
///
/// `rotate(to:)` switches to a new file at an exact point of the queue: everything queued before it ends up
/// in the old file, everything after in the new one.
public final class GroupCommitLog: @unchecked Sendable {
    private enum Item {
        case records(bytes: [UInt8], completion: (() -> Void)?)
        case rotate(path: String, completion: () -> Void)
    }

    private var file: LogFile
    private let logger: Logger
    private let condition = NSCondition()
    private var queue: [Item] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)
    private var stats = (syncs: UInt64(0), records: UInt64(0), bytes: 0)

    public init(file: LogFile, logger: Logger) {
        self.file = file
        self.logger = logger
        stats.bytes = file.sizeBytes
        let thread = Thread { [unowned self] in
            self.run()
            self.finished.signal()
        }
        thread.name = "group-commit"
        thread.start()
    }

    /// Queues `payloads` (unframed); `completion` runs on the writer thread once they are durable.
    /// An empty `payloads` still waits for everything queued before it.
    public func append(_ payloads: [[UInt8]], completion: (() -> Void)? = nil) {
        var bytes: [UInt8] = []
        for payload in payloads { bytes.append(contentsOf: LogFile.frame(payload)) }
        condition.lock()
        queue.append(.records(bytes: bytes, completion: completion))
        stats.records += UInt64(payloads.count)
        stats.bytes += bytes.count
        condition.signal()
        condition.unlock()
    }

    /// Queues `payloads` and blocks the calling thread until they are durable.
    public func appendAndWait(_ payloads: [[UInt8]]) {
        let done = DispatchSemaphore(value: 0)
        append(payloads) { done.signal() }
        done.wait()
    }

    /// Queues a switch to a new, empty log file at `path`; `completion` runs once the old file is synced and
    /// the new one exists durably.
    public func rotate(to path: String, completion: @escaping () -> Void) {
        condition.lock()
        queue.append(.rotate(path: path, completion: completion))
        stats.bytes = LogFile.magic.count
        condition.signal()
        condition.unlock()
    }

    /// Bytes in the current file, counting records queued but not yet written.
    public var sizeBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return stats.bytes
    }

    /// fdatasync calls and records queued so far, for measurements.
    public var counters: (syncs: UInt64, records: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        return (stats.syncs, stats.records)
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                condition.unlock()
                return
            }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            condition.unlock()

            var bytes: [UInt8] = []
            var waiting: [() -> Void] = []
            for item in batch {
                switch item {
                case .records(let framed, let completion):
                    bytes.append(contentsOf: framed)
                    if let completion { waiting.append(completion) }
                case .rotate(let path, let completion):
                    flush(&bytes, &waiting)
                    do {
                        file = try LogFile(path: path) { _, _ in }
                    } catch {
                        fail("cannot create log file \(path): \(error)")
                    }
                    completion()
                }
            }
            flush(&bytes, &waiting)
        }
    }

    /// Writes and syncs `bytes`, then runs `waiting`; both are emptied.
    private func flush(_ bytes: inout [UInt8], _ waiting: inout [() -> Void]) {
        do {
            if !bytes.isEmpty { try file.append(framed: bytes) }
            try file.sync()
        } catch {
            fail("log write failed, stopping so no unsynced write is ever acknowledged: \(error)")
        }
        condition.lock()
        stats.syncs += 1
        condition.unlock()
        bytes.removeAll(keepingCapacity: true)
        for completion in waiting { completion() }
        waiting.removeAll(keepingCapacity: true)
    }

    private func fail(_ message: String) -> Never {
        logger.critical("\(message)")
        exit(74)
    }

    /// Finishes queued work and stops the writer thread.
    public func close() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
        finished.wait()
    }
}
