import KVCommon

/// The master: one real `Coordinator` per running transaction, executed the way `TransactionRunner` does it,
/// plus what `DecisionLog`, `InFlightRegistry`, `CommitDelivery` and `ReplicaLink` do around it.
///
/// - Decision log: COMMIT is appended unsynced; the coordinator gets `.decisionDurable` only after `sync`
///   (the runner blocks in `recordCommit`, so its mailbox waits too). END is appended without waiting. The
///   in-memory `pending` map (COMMIT without END) and `ended` (commits that ended, rebuilt at start-up from
///   the files still present) are what in-doubt resolution consults (`DecisionLog.wasCommitted`).
///   `compact` models the switch to a new generation that carries only COMMITs without END, after which the
///   old file is deleted.
/// - Registry: `beginCommit` before the COMMIT is written; `resolve` answers commit/abort/pending and vetoes a
///   transaction that is still preparing.
/// - Links: one connection per replica, opened lazily; a new connection sends `stat` first and resolves the
///   in-doubt seqs it lists. A closed connection fails its unanswered calls (`.unreachable` to coordinators).
/// - `crash` loses coordinators, registry, links, delivery state and unsynced records; `restart` replays the
///   durable log and re-sends `com` for every COMMIT without END.
final class SimMaster {
    static let name = "master"

    enum Registration { case running, vetoed, committing }
    enum Resolution: String { case commit, abort, pending }

    enum Purpose {
        case transaction(UInt64)
        case stat
        case deliver(UInt64)
        case resolveCommit(UInt64)
        case resolveAbort(UInt64)
        case read
    }

    struct Link {
        var connection: Int
        var calls: [UInt64: Purpose] = [:]
    }

    struct Transaction {
        var coordinator: Coordinator
        var mailbox: [Coordinator.Event] = []
        /// Blocked in `recordCommit` until the COMMIT record is durable.
        var awaitingCommitRecord = false
    }

    let replicas: [String]
    let context: SimContext
    let network: SimNetwork
    let checker: SimChecker
    let replicaIsUp: (String) -> Bool
    private(set) var up = true
    private var epoch: UInt64 = 1
    private var counter: UInt64 = 0
    private(set) var durableLog: [DecisionRecord] = []
    private(set) var unsynced: [DecisionRecord] = []
    private(set) var durableCommits: Set<UInt64> = []
    private(set) var pending: [UInt64: [String]] = [:]
    private(set) var ended = DecisionMemory(capacity: 1 << 20)
    var registry: [UInt64: Registration] = [:]
    var transactions: [UInt64: Transaction] = [:]
    var delivery: [UInt64: Set<String>] = [:]
    var links: [String: Link] = [:]

    init(replicas: [String], context: SimContext, network: SimNetwork, checker: SimChecker,
         replicaIsUp: @escaping (String) -> Bool) {
        self.replicas = replicas
        self.context = context
        self.network = network
        self.checker = checker
        self.replicaIsUp = replicaIsUp
    }

    var isIdle: Bool { transactions.isEmpty && unsynced.isEmpty && delivery.isEmpty && pending.isEmpty }

    /// Transactions whose runner would take a mailbox event now.
    var mailboxReady: [UInt64] {
        transactions.keys.sorted().filter { !transactions[$0]!.mailbox.isEmpty && !transactions[$0]!.awaitingCommitRecord }
    }

    /// Transactions whose runner is waiting on an empty mailbox, so its deadline can pass.
    var timeoutCandidates: [UInt64] {
        transactions.keys.sorted().filter { transactions[$0]!.mailbox.isEmpty && !transactions[$0]!.awaitingCommitRecord }
    }

    // MARK: - Transactions (TransactionRunner)

    func startTransaction(_ op: WriteOp) {
        counter += 1
        let seq = epoch * 1_000_000 + counter
        registry[seq] = .running
        transactions[seq] = Transaction(coordinator: Coordinator(seq: seq, op: op, participants: replicas))
        context.stats.transactions += 1
        checker.masterStarted(seq)
        context.trace("master: start \(seq) \(op.brief)")
        feed(seq, .start)
    }

    /// The runner of a random ready transaction takes the oldest event from its mailbox.
    func processMailbox(_ seq: UInt64) {
        guard var transaction = transactions[seq], !transaction.mailbox.isEmpty else { return }
        let event = transaction.mailbox.removeFirst()
        transactions[seq] = transaction
        feed(seq, event)
    }

    func timeOut(_ seq: UInt64) {
        guard let transaction = transactions[seq] else { return }
        context.trace("master: \(seq) times out in phase \(transaction.coordinator.phase)")
        feed(seq, .timeout)
    }

    /// Runs the coordinator on `event` and executes its actions in order, as `TransactionRunner.run` does.
    func feed(_ seq: UInt64, _ event: Coordinator.Event) {
        var local = [event]
        while !local.isEmpty {
            let next = local.removeFirst()
            guard var transaction = transactions[seq] else { return }
            let actions = transaction.coordinator.handle(next)
            transactions[seq] = transaction
            for action in actions {
                switch action {
                case .send(let replica, let request):
                    if !call(replica, request, purpose: .transaction(seq)) {
                        post(seq, .unreachable(replica: replica, reason: "connection refused (\(replica))"))
                    }
                case .persist(.commit(let commitSeq, let participants)):
                    guard registry[commitSeq] == .running else {
                        context.stats.vetoes += 1
                        context.trace("master: \(commitSeq) vetoed before its COMMIT record")
                        local.append(.decisionVetoed(reason: "aborted: a replica in doubt was told abort first"))
                        continue
                    }
                    registry[commitSeq] = .committing
                    unsynced.append(.commit(seq: commitSeq, participants: participants))
                    context.trace("master: append COMMIT \(commitSeq)")
                    if context.mutation == .comBeforeDurable {
                        local.append(.decisionDurable)
                    } else {
                        transactions[seq]?.awaitingCommitRecord = true
                    }
                case .persist(.end(let endSeq)):
                    recordEnd(endSeq)
                case .finish(let outcome):
                    finish(seq, outcome)
                    return
                }
            }
        }
    }

    private func finish(_ seq: UInt64, _ outcome: Coordinator.Outcome) {
        context.trace("master: finish \(seq) committed=\(outcome.committed) failure=\(String(describing: outcome.failure)) "
            + "pending=\(outcome.pendingCommit)")
        if outcome.committed {
            context.stats.commits += 1
            if !outcome.pendingCommit.isEmpty { context.stats.pendingCommits += 1 }
        } else {
            context.stats.aborts += 1
            switch outcome.failure {
            case .conflict?: context.stats.abortCauses[0] += 1
            case .unavailable?: context.stats.abortCauses[1] += 1
            case .notFound?: context.stats.abortCauses[2] += 1
            case .aborted?, nil: context.stats.abortCauses[3] += 1
            }
        }
        if !outcome.pendingCommit.isEmpty { delivery[seq] = Set(outcome.pendingCommit) }
        transactions[seq] = nil
        registry[seq] = nil
        checker.masterFinished(outcome, durableCommit: durableCommits.contains(seq))
    }

    func post(_ seq: UInt64, _ event: Coordinator.Event) {
        transactions[seq]?.mailbox.append(event)
    }

    // MARK: - Decision log (DecisionLog)

    /// fsync: the first `count` unsynced records (all when nil) become durable.
    func sync(count: Int? = nil) {
        let take = min(unsynced.count, count ?? unsynced.count)
        guard take > 0 else { return }
        let records = Array(unsynced.prefix(take))
        unsynced.removeFirst(take)
        durableLog += records
        context.trace("master: fsync \(records.count) decision records")
        for record in records {
            guard case .commit(let seq, let participants) = record else { continue }
            durableCommits.insert(seq)
            checker.masterCommitDurable(seq)
            pending[seq] = participants
            if transactions[seq]?.awaitingCommitRecord == true {
                transactions[seq]?.awaitingCommitRecord = false
                feed(seq, .decisionDurable)
            }
        }
    }

    func recordEnd(_ seq: UInt64) {
        guard pending.removeValue(forKey: seq) != nil else { return }
        ended.record(seq, .committed)
        unsynced.append(.end(seq: seq))
        context.trace("master: append END \(seq)")
        checker.masterEnded(seq)
    }

    /// Compaction once the file is "large": a new generation starts with a copy of every COMMIT without END
    /// (modelled once nothing is unsynced, so the copies are durable at once) and the old file is deleted.
    func compact() {
        guard unsynced.isEmpty else { return }
        var carried: [UInt64: [String]] = [:]
        for record in durableLog {
            switch record {
            case .commit(let seq, let participants): carried[seq] = participants
            case .end(let seq): carried[seq] = nil
            }
        }
        durableLog = carried.keys.sorted().map { .commit(seq: $0, participants: carried[$0]!) }
        context.stats.compactions += 1
        context.trace("master: decision log compacted, carries \(durableLog.count) commits without END")
    }

    /// `DecisionLog.wasCommitted`: durable and unacknowledged, or ended and still remembered.
    func wasCommitted(_ seq: UInt64) -> Bool { pending[seq] != nil || ended[seq] == .committed }

    // MARK: - Registry (InFlightRegistry.resolve)

    func resolve(_ seq: UInt64, reason: String) -> Resolution {
        let answer: Resolution
        switch registry[seq] {
        case .running?:
            registry[seq] = .vetoed
            post(seq, .abortRequested(reason: reason))
            answer = .abort
        case .vetoed?:
            answer = .abort
        case .committing?:
            answer = wasCommitted(seq) ? .commit : .pending
        case nil:
            answer = wasCommitted(seq) ? .commit : .abort
        }
        context.trace("master: resolve \(seq) -> \(answer.rawValue) (\(reason))")
        checker.masterResolved(seq, answer)
        return answer
    }

    // MARK: - Faults

    func crash() {
        up = false
        context.trace("master: CRASH (lost \(unsynced.count) unsynced records, \(transactions.count) running)")
        unsynced = []
        pending = [:]
        ended = DecisionMemory(capacity: 1 << 20)
        registry = [:]
        transactions = [:]
        delivery = [:]
        links = [:]
    }

    /// Start-up: a new epoch, the durable log replayed, `com` re-sent for every COMMIT without END, and a
    /// connection (with `stat`) to every replica.
    func restart() {
        up = true
        epoch += 1
        counter = 0
        for record in durableLog {
            switch record {
            case .commit(let seq, let participants): pending[seq] = participants
            case .end(let seq): if pending.removeValue(forKey: seq) != nil { ended.record(seq, .committed) }
            }
        }
        for (seq, participants) in pending { delivery[seq] = Set(participants) }
        context.trace("master: restart, epoch \(epoch), COMMIT without END: \(pending.keys.sorted())")
        connectAll()
    }
}
