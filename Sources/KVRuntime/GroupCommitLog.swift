import Foundation
import Logging

/// Group commit over a `LogFile`: callers hand in records with a completion; one writer thread appends
/// everything queued, issues a single fdatasync for the batch, then runs the completions in order.
///
/// Guarantee: a completion runs only after its records (and every record queued before them) are on stable
/// storage. A failed write or fsync stops the process: after a failed fsync the kernel may have dropped the
/// dirty pages, so retrying could report success for data that is gone (PostgreSQL's "fsyncgate").
public final class GroupCommitLog: @unchecked Sendable {
    private let file: LogFile
    private let logger: Logger
    private let condition = NSCondition()
    private var queue: [(bytes: [UInt8], completion: (() -> Void)?)] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)
    /// Number of fdatasync calls and records written, for measurements.
    public private(set) var syncCount: UInt64 = 0
    public private(set) var recordCount: UInt64 = 0

    public init(file: LogFile, logger: Logger) {
        self.file = file
        self.logger = logger
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
        queue.append((bytes, completion))
        recordCount += UInt64(payloads.count)
        condition.signal()
        condition.unlock()
    }

    /// Queues `payloads` and blocks the calling thread until they are durable.
    public func appendAndWait(_ payloads: [[UInt8]]) {
        let done = DispatchSemaphore(value: 0)
        append(payloads) { done.signal() }
        done.wait()
    }

    /// Current size of the log file in bytes.
    public var sizeBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return file.sizeBytes
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
            for item in batch { bytes.append(contentsOf: item.bytes) }
            do {
                if !bytes.isEmpty { try file.append(framed: bytes) }
                try file.sync()
            } catch {
                logger.critical("log write failed, stopping so no unsynced write is ever acknowledged: \(error)")
                exit(74)
            }
            condition.lock()
            syncCount += 1
            condition.unlock()
            for item in batch { item.completion?() }
        }
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
