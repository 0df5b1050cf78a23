import Foundation
import KVCommon

/// One `GET /watch` stream: the events owed to it, written to its parked request in order by one job at a time
/// on the `WatchWorkers`. Events queue here while a write is under way; a stream whose reader falls more than
/// `outboxBytesMax` behind is ended with an `error` event (it resumes with `Last-Event-ID`, as a client that lost
/// its connection would), so a slow reader costs bounded memory and never holds up the others.
final class WatchStream: @unchecked Sendable {
    let id: UInt64
    let scope: ChangeHistory.Scope
    private let request: ParkedRequest
    private let workers: WatchWorkers
    private let onClose: (UInt64) -> Void
    private let outboxBytesMax: Int
    private let lock = NSLock()
    private var outbox: [UInt8] = []
    private var draining = false
    private var overflowed = false
    private var closed = false
    /// Whether anything was queued since the last heartbeat tick.
    private var active = false

    init(id: UInt64, scope: ChangeHistory.Scope, request: ParkedRequest, workers: WatchWorkers,
         outboxBytesMax: Int = 4 << 20, onClose: @escaping (UInt64) -> Void) {
        self.id = id
        self.scope = scope
        self.request = request
        self.workers = workers
        self.outboxBytesMax = outboxBytesMax
        self.onClose = onClose
    }

    /// Queues bytes (whole events) to be written after everything queued before.
    func enqueue(_ bytes: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        guard !closed, !overflowed else { return }
        active = true
        if outbox.count + bytes.count > outboxBytesMax {
            overflowed = true
            outbox = []
        } else {
            outbox.append(contentsOf: bytes)
        }
        scheduleLocked()
    }

    /// A heartbeat tick: a comment line if nothing else was queued since the last one (it also finds readers that
    /// went away, whose write then fails).
    func heartbeat() {
        lock.lock()
        let idle = !active
        active = false
        lock.unlock()
        if idle { enqueue(WatchEvents.heartbeat) }
    }

    private func scheduleLocked() {
        guard !draining else { return }
        draining = true
        workers.submit { [self] in drain() }
    }

    private func drain() {
        while true {
            lock.lock()
            let bytes = outbox
            outbox = []
            let overflow = overflowed
            if bytes.isEmpty && !overflow {
                draining = false
                lock.unlock()
                return
            }
            lock.unlock()
            if overflow {
                close(WatchEvents.error("this watcher fell more than \(outboxBytesMax) bytes behind; resume with "
                    + "Last-Event-ID"))
                return
            }
            guard request.send(bytes) else {
                close([])
                return
            }
        }
    }

    private func close(_ last: [UInt8]) {
        lock.lock()
        closed = true
        draining = false
        lock.unlock()
        request.finish(last)
        onClose(id)
    }
}
