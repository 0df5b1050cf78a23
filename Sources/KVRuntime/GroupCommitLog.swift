import Foundation
import KVCommon
import Logging

/// Group commit over a `LogFile`: callers queue records with a completion; a flush appends everything queued,
/// issues a single fdatasync for the batch, then runs the completions in order.
///
/// Who flushes depends on how a record was queued (`Sync`):
/// - `.writer`: the log's own writer thread is woken and flushes.
/// - `.caller`: nobody is woken; the caller promises to call `flush()` soon, typically at the end of its
///   event-loop tick, and does the write and fsync on its own thread. A busy event loop thus makes one fsync
///   for everything it queued in a tick without handing work to another thread and back (two context
///   switches per batch, which are the dearest thing on a small virtual machine).
/// - `.lazy`: records whose loss in a crash is harmless (a decision log's END). They go out with the next
///   flush, or within about twice `lazyFlushMs` when nothing else is written.
/// An idle log costs nothing: after a quiet `lazyFlushMs` with nothing appended the writer thread sleeps until
/// an append needs it, instead of looking every `lazyFlushMs`.
/// Flushes never overlap (leader/follower): a flush that finds one in progress waits for it, then takes
/// whatever is still queued.
///
/// Guarantee: a completion runs only after its records (and every record queued before them) are on stable
/// storage. A failed write or fsync stops the process: after a failed fsync the kernel may have dropped the
/// dirty pages, so retrying could report success for data that is gone (PostgreSQL's "fsyncgate").
///
/// `rotate(to:)` switches to a new file at an exact point of the queue: everything queued before it ends up
/// in the old file, everything after in the new one.
public final class GroupCommitLog: @unchecked Sendable {
    public enum Sync {
        case writer, caller, lazy
    }

    private enum Item {
        case records(bytes: [UInt8], completion: (() -> Void)?)
        case rotate(path: String, completion: () -> Void)
    }

    private var file: LogFile
    private let logger: Logger
    private let lazyFlushMs: Int
    private let condition = NSCondition()
    private var queue: [Item] = []
    /// The queue holds something that must be flushed soon (not only lazy records).
    private var urgent = false
    /// The queue holds `.caller` records, which their caller will flush.
    private var callerQueued = false
    private var flushing = false
    /// Threads sleeping until the flush under way ends.
    private var flushWaiters = 0
    private var stopping = false
    /// Appends so far, so the writer can tell a quiet period from a busy one.
    private var appends: UInt64 = 0
    /// The writer sleeps without a time limit: the next lazy append must wake it.
    private var writerIdle = false
    private let finished = DispatchSemaphore(value: 0)
    private var stats = (syncs: UInt64(0), records: UInt64(0), bytes: 0)

    public init(file: LogFile, logger: Logger, lazyFlushMs: Int = 50) {
        self.file = file
        self.logger = logger
        self.lazyFlushMs = lazyFlushMs
        stats.bytes = file.sizeBytes
        // The writer holds the log until `close()`: a log dropped without it (a start-up that fails later) must
        // not leave the thread reading freed memory.
        let thread = Thread {
            self.runWriter()
            self.finished.signal()
        }
        thread.name = "group-commit"
        thread.start()
    }

    /// Queues `payloads` (unframed); `completion` runs once they are durable, on the thread that flushed them.
    /// An empty `payloads` still waits for everything queued before it.
    public func append(_ payloads: [[UInt8]], sync: Sync = .writer, completion: (() -> Void)? = nil) {
        // Framed in place, into one array for the whole call (not one per record, then copied).
        var writer = BinaryWriter(capacity: payloads.reduce(0) { $0 + $1.count + LogFile.frameHeaderBytes })
        for payload in payloads { LogFile.appendFrame(to: &writer) { $0.raw(payload) } }
        let bytes = writer.bytes
        condition.lock()
        queue.append(.records(bytes: bytes, completion: completion))
        stats.records += UInt64(payloads.count)
        stats.bytes += bytes.count
        appends &+= 1
        if sync == .writer {
            urgent = true
            condition.broadcast()
        } else if sync == .caller {
            callerQueued = true
        } else if sync == .lazy && writerIdle {
            condition.broadcast()
        }
        condition.unlock()
    }

    /// Queues a switch to a new, empty log file at `path`; `completion` runs once the old file is synced and
    /// the new one exists durably.
    public func rotate(to path: String, completion: @escaping () -> Void) {
        condition.lock()
        queue.append(.rotate(path: path, completion: completion))
        stats.bytes = LogFile.magic.count
        urgent = true
        condition.broadcast()
        condition.unlock()
    }

    /// Writes and syncs everything queued so far on the calling thread (after any flush already under way),
    /// running the completions here. Returns at once if nothing is queued, or, with `onlyForCallerRecords`, if
    /// nothing queued was appended with `.caller` (lazy records alone are left to ride along later).
    public func flush(onlyForCallerRecords: Bool = false) {
        condition.lock()
        while flushing { waitForFlushLocked() }
        guard !queue.isEmpty, callerQueued || !onlyForCallerRecords else {
            condition.unlock()
            return
        }
        flushQueueLocked()
        condition.unlock()
    }

    /// Bytes of the records in the current file, counting those queued but not yet written (the few bytes of
    /// each write's batch header aside: this sizes snapshots and compactions, it does not address the file).
    public var sizeBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return stats.bytes
    }

    /// Whether the writer thread sleeps without a time limit (tests wait for this).
    var writerIsIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return writerIdle
    }

    /// fdatasync calls and records queued so far, for measurements.
    public var counters: (syncs: UInt64, records: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        return (stats.syncs, stats.records)
    }

    private func runWriter() {
        condition.lock()
        defer { condition.unlock() }
        // When lazy records were first seen waiting; they are flushed once `lazyFlushMs` have passed.
        var lazyDeadline: Date?
        var quiet = false
        while true {
            if flushing {
                waitForFlushLocked()
                continue
            }
            if queue.isEmpty {
                lazyDeadline = nil
                if stopping { return }
                if quiet {
                    writerIdle = true
                    condition.wait()
                    writerIdle = false
                    quiet = false
                    continue
                }
                // While appends go on, lazy ones do not wake this thread (that would cost a context switch per
                // record): it looks again every `lazyFlushMs`, so a lazy record waits at most about twice that.
                let seen = appends
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(lazyFlushMs) / 1000))
                quiet = appends == seen
                continue
            }
            let deadline = lazyDeadline ?? Date(timeIntervalSinceNow: Double(lazyFlushMs) / 1000)
            if urgent || stopping || Date() >= deadline {
                lazyDeadline = nil
                flushQueueLocked()
                continue
            }
            // Only lazy (or caller-flushed) records: give them time to ride along with someone else's flush.
            lazyDeadline = deadline
            _ = condition.wait(until: deadline)
        }
    }

    /// Must be called with `condition` locked while a flush is under way: sleeps until it ends. Counted, so the
    /// flush wakes sleepers only when someone waits for it (an idle writer thread is not woken for nothing).
    private func waitForFlushLocked() {
        flushWaiters += 1
        condition.wait()
        flushWaiters -= 1
    }

    /// Must be called with `condition` locked and no flush under way; returns with it locked. Takes the whole
    /// queue, writes and syncs it without the lock held, runs the completions, then lets the next flush start.
    private func flushQueueLocked() {
        let batch = queue
        queue.removeAll(keepingCapacity: true)
        urgent = false
        callerQueued = false
        flushing = true
        condition.unlock()

        // One batch per write: its header is filled in front of the frames when it is written (`LogFile.appendBatch`).
        var bytes = [UInt8](repeating: 0, count: LogFile.batchHeaderBytes)
        var waiting: [() -> Void] = []
        for item in batch {
            switch item {
            case .records(let framed, let completion):
                bytes.append(contentsOf: framed)
                if let completion { waiting.append(completion) }
            case .rotate(let path, let completion):
                write(&bytes, &waiting)
                do {
                    file = try LogFile(path: path) { _, _ in }
                } catch {
                    fail("cannot create log file \(path): \(error)")
                }
                completion()
            }
        }
        write(&bytes, &waiting)

        condition.lock()
        flushing = false
        if flushWaiters > 0 { condition.broadcast() }
    }

    /// Writes `bytes` (a batch header's room, then frames) and syncs, then runs `waiting`; both are emptied.
    private func write(_ bytes: inout [UInt8], _ waiting: inout [() -> Void]) {
        do {
            if bytes.count > LogFile.batchHeaderBytes { try file.appendBatch(&bytes) }
            try file.sync()
        } catch {
            fail("log write failed, stopping so no unsynced write is ever acknowledged: \(error)")
        }
        condition.lock()
        stats.syncs += 1
        condition.unlock()
        bytes.removeSubrange(LogFile.batchHeaderBytes...)
        for completion in waiting { completion() }
        waiting.removeAll(keepingCapacity: true)
    }

    private func fail(_ message: String) -> Never {
        logger.critical("\(message)")
        exit(74)
    }

    /// Finishes queued work (lazy records included) and stops the writer thread.
    public func close() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        finished.wait()
    }
}
