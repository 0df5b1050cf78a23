import Foundation
import KVCommon
import Logging

/// Makes sure every commit decision reaches every participant, and answers replicas' in-doubt questions.
///
/// - Commits whose acks did not all arrive in time (and every COMMIT without END found at start-up) are
///   re-sent with exponential backoff until each participant acknowledges; then END is logged. A commit is
///   never turned into an abort.
/// - When a link (re)connects, the replica's `stat` lists its in-doubt seqs. For each: a transaction still
///   running here is asked to abort (it ignores that if it already decided commit); a logged commit gets
///   `com`; anything else gets `abrt` (presumed abort: no record means it never committed, and without a
///   running coordinator it never will).
final class CommitDelivery: @unchecked Sendable {
    private struct Pending {
        var unacked: Set<String>
        var attempts: Int
        var nextAttempt: Date
    }

    /// The links of the configuration in force (a reload may change them).
    private let currentPool: () -> ReplicaPool
    private let decisions: DecisionLog
    private let registry: InFlightRegistry
    private let logger: Logger
    private let condition = NSCondition()
    private var pending: [UInt64: Pending] = [:]

    init(currentPool: @escaping () -> ReplicaPool, decisions: DecisionLog, registry: InFlightRegistry,
         logger: Logger) {
        self.currentPool = currentPool
        self.decisions = decisions
        self.registry = registry
        self.logger = logger
    }

    /// Starts the background sender, first queueing every commit the decision log has without END.
    func start() {
        for (seq, participants) in decisions.pendingCommits() {
            logger.notice("re-sending commit \(seq) to \(participants.joined(separator: ", ")) (no END in the decision log)")
            track(seq: seq, replicas: participants)
        }
        let thread = Thread { [self] in self.run() }
        thread.name = "commit-delivery"
        thread.start()
    }

    /// Keeps sending `com` for `seq` to `replicas` until each acknowledges.
    func track(seq: UInt64, replicas: [String]) {
        condition.lock()
        pending[seq] = Pending(unacked: Set(replicas), attempts: 0, nextAttempt: Date())
        condition.signal()
        condition.unlock()
    }

    var pendingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return pending.count
    }

    /// Resolves the in-doubt transactions a freshly connected replica reported.
    func resolveInDoubt(link: ReplicaLink, stat: WireReply) {
        let replica = link.replica.id
        for item in stat.stat?.inDoubt ?? [] {
            let seq = item.seq
            switch registry.resolve(seq, reason: "\(replica) reconnected while transaction \(seq) was undecided") {
            case .commit:
                logger.notice("in-doubt \(seq) on \(replica): logged as committed, sending com")
                link.send(.com(seq)) { result in
                    if case .success(let reply) = result, reply.status { self.acknowledged(seq: seq, by: replica) }
                }
            case .abort:
                logger.notice("in-doubt \(seq) on \(replica): no commit record, sending abrt (presumed abort)")
                link.send(.abrt(seq)) { _ in }
            case .pending:
                logger.info("in-doubt \(seq) on \(replica): commit being recorded; the running transaction sends com")
            }
        }
    }

    /// `replica` was just synced from an in-sync replica: it holds every commit decided before, so it owes no
    /// acks (a wiped replica could never acknowledge a `com` for a transaction it no longer knows).
    func replicaSynced(_ replica: String) {
        condition.lock()
        let seqs = pending.filter { $0.value.unacked.contains(replica) }.map(\.key)
        condition.unlock()
        for seq in seqs { acknowledged(seq: seq, by: replica) }
    }

    private func acknowledged(seq: UInt64, by replica: String) {
        condition.lock()
        var done = false
        if var entry = pending[seq] {
            entry.unacked.remove(replica)
            if entry.unacked.isEmpty {
                pending[seq] = nil
                done = true
            } else {
                pending[seq] = entry
            }
        }
        condition.unlock()
        if done {
            decisions.recordEnd(seq: seq)
            logger.info("commit \(seq) acknowledged by every participant")
        }
    }

    private func run() {
        while true {
            condition.lock()
            let now = Date()
            var due: [(UInt64, Set<String>)] = []
            var wake = now.addingTimeInterval(1)
            for (seq, entry) in pending {
                if entry.nextAttempt <= now {
                    due.append((seq, entry.unacked))
                    var updated = entry
                    updated.attempts += 1
                    updated.nextAttempt = now.addingTimeInterval(min(5, 0.05 * pow(2, Double(min(updated.attempts, 10)))))
                    pending[seq] = updated
                    wake = min(wake, updated.nextAttempt)
                } else {
                    wake = min(wake, entry.nextAttempt)
                }
            }
            if due.isEmpty { _ = condition.wait(until: wake) }
            condition.unlock()
            let pool = currentPool()
            for (seq, replicas) in due {
                for replica in replicas {
                    guard let link = pool.link(replica) else {
                        // Removed from the configuration: it no longer needs this (or any) commit.
                        logger.notice("commit \(seq): \(replica) is no longer configured; not waiting for it")
                        acknowledged(seq: seq, by: replica)
                        continue
                    }
                    link.send(.com(seq)) { result in
                        if case .success(let reply) = result, reply.status { self.acknowledged(seq: seq, by: replica) }
                    }
                }
            }
        }
    }
}
