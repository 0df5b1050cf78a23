import Foundation
import KVCommon

/// The transactions this master is running right now, and the single place where "commit" and "abort"
/// race: a running transaction either enters its commit (`beginCommit`) or is promised to abort to an
/// in-doubt replica that asked (`resolve`), never both. Also enforces `limits.in_flight_transactions_max`.
final class InFlightRegistry: @unchecked Sendable {
    /// What the master tells a replica that asks about a seq.
    enum Resolution: Equatable {
        /// The COMMIT record is durable: commit.
        case commit
        /// No commit happened and none ever will for this seq: abort.
        case abort
        /// The commit record is being written right now: ask again shortly.
        case pending
    }

    private enum State {
        case running(post: (Coordinator.Event) -> Void)
        case vetoed
        case committing
    }

    private let lock = NSLock()
    private var states: [UInt64: State] = [:]
    private let limit: Int
    private let decisions: DecisionLog

    init(limit: Int, decisions: DecisionLog) {
        self.limit = limit
        self.decisions = decisions
    }

    /// Registers `seq`; false when the limit is reached (the caller answers 503).
    func register(_ seq: UInt64, post: @escaping (Coordinator.Event) -> Void) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard states.count < limit else { return false }
        states[seq] = .running(post: post)
        return true
    }

    func remove(_ seq: UInt64) {
        lock.lock()
        states[seq] = nil
        lock.unlock()
    }

    /// Called before writing the COMMIT record; false if an abort was already promised for `seq`.
    func beginCommit(_ seq: UInt64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard case .running = states[seq] else { return false }
        states[seq] = .committing
        return true
    }

    /// The outcome to tell a replica that is in doubt about `seq`. A transaction still preparing here is
    /// vetoed (it will abort), so the answer "abort" stays true forever.
    func resolve(_ seq: UInt64, reason: String) -> Resolution {
        lock.lock()
        defer { lock.unlock() }
        switch states[seq] {
        case .running(let post):
            states[seq] = .vetoed
            post(.abortRequested(reason: reason))
            return .abort
        case .vetoed:
            return .abort
        case .committing:
            return decisions.wasCommitted(seq: seq) ? .commit : .pending
        case nil:
            // Not running: it finished. Its commit, if any, is in the decision log or the recent-commit memory.
            return decisions.wasCommitted(seq: seq) ? .commit : .abort
        }
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return states.count
    }
}
