import Foundation
import KVCommon
import Logging
import Synchronization

/// The master's lease thread. Once the master runs it reads every lease from a replica (with writes paused, so
/// nothing is published meanwhile and the table starts exactly where the replicas are), then expires each lease
/// whose deadline passed in one transaction, many in flight at once. A client's revoke runs the same removal.
final class LeaseKeeper: @unchecked Sendable {
    enum Removal {
        /// Committed: the lease, its `keys` and every marker are gone.
        case removed(Coordinator.Outcome, keys: Int)
        /// No such lease alive (or its expiry is running).
        case notFound
        /// The transaction did not commit (unavailable, conflict): the answer to report.
        case failed(TransactionManager.WriteAnswer)
        /// Its keys kept changing under the removal; the lease is left as it was.
        case busy
    }

    private let node: MasterNode
    private let reads: ReplicaReads
    private let logger: Logger
    private let inFlight = Atomic<Int>(0)
    /// Expiries to run again, and when: a compare that failed (after the keys are re-read) or a transaction
    /// that could not run (replicas unavailable; backed off).
    private let again = Mutex<[(id: UInt64, attempt: Int, atMs: Int64)]>([])
    /// Expiry transactions in flight at most (each holds a slot of `in_flight_transactions_max`).
    private static let inFlightMax = 256
    /// Deadlines are checked this often: a lease expires at most this late, plus its transaction's time.
    private static let tickMs: UInt32 = 20

    init(node: MasterNode, reads: ReplicaReads, logger: Logger) {
        self.node = node
        self.reads = reads
        self.logger = logger
    }

    private var book: LeaseBook { node.leases }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "kv-leases"
        thread.start()
    }

    private func run() {
        var failures = 0
        while !load(quiet: failures > 0) {
            failures += 1
            usleep(UInt32(min(1000, 100 * failures)) * 1000)
        }
        while true {
            expireDue()
            usleep(Self.tickMs * 1000)
        }
    }

    // MARK: - Start-up

    /// Lists the reserved keys and loads the table, all while writes are paused.
    private func load(quiet: Bool) -> Bool {
        defer { reads.closeThreadConnections() }
        let limit = node.view.config.limits.listLimitMax
        let loaded = node.whilePaused(timeoutMs: 5000) { () -> Int? in
            var entries: [(key: [UInt8], value: [UInt8], version: UInt64)] = []
            var after: [UInt8] = []
            while true {
                let request = WireRequest(seq: UInt64(limit), command: .list, key: LeaseKeys.reserved, value: after)
                guard case .answered(let reply) = reads.read(request, in: node.view), let page = reply.page else {
                    return nil
                }
                entries += page.entries.map { ($0.key, $0.value, $0.version) }
                guard !page.done, let last = page.entries.last else { break }
                after = last.key
            }
            return book.withTable { table in
                table.load(entries, nowMs: LeaseBook.nowMs)
                return table.leases.count
            }
        }
        guard let count = loaded ?? nil else {
            if !quiet { logger.notice("leases not loaded yet (no replica could list them, or writes did not pause); retrying") }
            return false
        }
        logger.info("leases loaded: \(count), each with its full TTL from now")
        return true
    }

    // MARK: - Expiry

    private func expireDue() {
        let now = LeaseBook.nowMs
        var room = Self.inFlightMax - inFlight.load(ordering: .relaxed)
        let ready = again.withLock { list -> [(id: UInt64, attempt: Int, atMs: Int64)] in
            let ready = Array(list.lazy.filter { $0.atMs <= now }.prefix(max(0, room)))
            let taken = Set(ready.map(\.id))
            list.removeAll { taken.contains($0.id) }
            return ready
        }
        for item in ready { startExpiry(item.id, attempt: item.attempt) }
        room -= ready.count
        guard room > 0 else { return }
        for id in book.withTable({ $0.takeExpired(nowMs: now, limit: room) }) { startExpiry(id, attempt: 0) }
    }

    private func startExpiry(_ id: UInt64, attempt: Int) {
        if attempt > 0 { refresh(id) }
        guard let lease = book.withTable({ $0.leases[id] }) else { return }
        let intent = TransactionManager.WriteIntent(txn: LeaseTable.removal(of: lease), expiry: true)
        inFlight.add(1, ordering: .relaxed)
        node.write(intent) { [self] answer in
            inFlight.subtract(1, ordering: .relaxed)
            let verdict = LeaseRemoval.verdict(answer)
            switch LeaseRemoval.afterExpiry(verdict, attempt: attempt) {
            case .done:
                logger.debug("lease \(id) expired: \(lease.keys.count) key(s) deleted")
            case .again(let next, let delay):
                if next == 1 && attempt == 0 && verdict == .notRun {
                    logger.warning("lease \(id) expired but its removal did not commit; retrying")
                }
                again.withLock { $0.append((id, next, LeaseBook.nowMs + Int64.random(in: delay))) }
            case .giveUp:
                book.withTable { $0.removalFailed(id) }
            }
        }
    }

    // MARK: - Revoke

    /// Removes the lease now (`DELETE /lease/{id}`), on the calling worker thread.
    func revoke(_ id: UInt64) -> Removal {
        guard book.withTable({ $0.beginRevoke(id, nowMs: LeaseBook.nowMs) }) != nil else { return .notFound }
        var compareFailures = 0
        var attempts = 0
        while true {
            if compareFailures > 0 { refresh(id) }
            guard let lease = book.withTable({ $0.leases[id] }) else { return .notFound }
            let answer = node.write(WriteRequest.txn(LeaseTable.removal(of: lease)).intent)
            let verdict = LeaseRemoval.verdict(answer)
            switch LeaseRemoval.afterRevoke(verdict, compareFailures: compareFailures, attempts: attempts) {
            case .done:
                guard case .removed(let outcome) = verdict else { return .notFound }
                return .removed(outcome, keys: lease.keys.count)
            case .again(let failures, let delay):
                attempts += 1
                compareFailures = failures
                if delay.upperBound > 0 { usleep(UInt32(Int64.random(in: delay)) * 1000) }
            case .giveUp:
                book.withTable { $0.removalFailed(id) }
                return verdict == .notRun ? .failed(answer) : .busy
            }
        }
    }

    // MARK: - Shared

    /// After a failed compare: re-reads the lease's keys and marks those written since their attachment as
    /// stale (a table loaded at start knows the markers' versions, not the keys').
    private func refresh(_ id: UInt64) {
        defer { reads.closeThreadConnections() }
        guard let lease = book.withTable({ $0.leases[id] }) else { return }
        for (key, version) in lease.keys {
            guard case .answered(let reply) = reads.read(.get(key), in: node.view),
                  let current = LeaseTable.version(from: reply) else { continue }
            if current != version { book.withTable { $0.markStale(key, of: id, attachedAt: version) } }
        }
    }
}
