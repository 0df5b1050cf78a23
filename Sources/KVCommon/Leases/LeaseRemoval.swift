/// What the master does with the answer to a lease's removal transaction (`LeaseTable.removal`): the rules the
/// master's `LeaseKeeper` runs for expiries and revokes, and the simulation runs too.
///
/// A failed compare means the table missed a write (the removal was built before it was published, or the table
/// was loaded from markers without the keys' own versions): the keys are read again (`LeaseTable.markStale`) and
/// the removal retried. A conflict means a client's write held one of the keys at that instant: it is retried
/// at once. A transaction that did not run (replicas unavailable, refused) is retried later for an expiry, and
/// reported for a revoke.
public enum LeaseRemoval {
    public enum Verdict: Equatable, Sendable {
        /// Committed: the lease, its keys and every marker naming it are gone.
        case removed(Coordinator.Outcome)
        /// Committed, but a compare failed: nothing was deleted.
        case compareFailed
        /// Aborted because another transaction held one of its keys: worth running again at once.
        case conflict
        /// Not run, or aborted for another reason.
        case notRun
    }

    public static func verdict(_ answer: TransactionManager.WriteAnswer) -> Verdict {
        guard case .outcome(let outcome) = answer else { return .notRun }
        guard outcome.committed else { return outcome.failure == .conflict ? .conflict : .notRun }
        return outcome.txn?.succeeded == true ? .removed(outcome) : .compareFailed
    }

    /// Removals that fail their compare this many times in a row stop for a while (an expiry) or give up (a revoke).
    public static let compareAttemptsMax = 5
    /// A revoke runs at most this many transactions (conflicts included) before it gives up.
    public static let revokeAttemptsMax = 50

    public enum Next: Equatable, Sendable {
        case done
        /// Run the removal again after a delay drawn from `delayMs`, as attempt `attempt` (from 1 on, its keys are
        /// read again first).
        case again(attempt: Int, delayMs: ClosedRange<Int64>)
        /// A revoke that cannot finish: the lease stays alive (`LeaseTable.removalFailed`).
        case giveUp
    }

    /// After attempt `attempt` (0 first) of an expiry: the lease stays expired until its removal commits, so an
    /// expiry never gives up; keepalives refuse it meanwhile.
    public static func afterExpiry(_ verdict: Verdict, attempt: Int) -> Next {
        switch verdict {
        case .removed: return .done
        case .compareFailed where attempt + 1 < compareAttemptsMax: return .again(attempt: attempt + 1, delayMs: 0...0)
        case .conflict: return .again(attempt: attempt, delayMs: 5...30)
        case .compareFailed, .notRun: return .again(attempt: 1, delayMs: 1000...1000)
        }
    }

    /// After a revoke's transaction: `compareFailures` and `attempts` count the ones before it.
    public static func afterRevoke(_ verdict: Verdict, compareFailures: Int, attempts: Int) -> Next {
        guard attempts + 1 < revokeAttemptsMax else {
            if case .removed = verdict { return .done }
            return .giveUp
        }
        switch verdict {
        case .removed: return .done
        case .compareFailed where compareFailures + 1 < compareAttemptsMax:
            return .again(attempt: compareFailures + 1, delayMs: 0...0)
        case .conflict: return .again(attempt: compareFailures, delayMs: 2...20)
        case .compareFailed, .notRun: return .giveUp
        }
    }
}

extension TransactionManager.WriteIntent {
    /// A multi-key transaction: both branches' writes, the prepare carrying the spec (the manager fills in the seq).
    public init(txn spec: TxnSpec, lease: UInt64 = 0, expiry: Bool = false) {
        self.init(prepare: WireRequest(seq: 1, command: .txn, value: spec.wireJSON()),
                  writes: spec.success.compactMap(\.write), failureWrites: spec.failure.compactMap(\.write),
                  lease: lease, expiry: expiry)
    }
}
