// Coordinator: the master side of two-phase commit for one transaction, as a value-type state machine.
//
// Phases (tmState of the TwoPhase TLA+ module in Gray and Lamport's "Consensus on Transaction Commit"):
// preparing -> deciding -> committing | aborting -> finished.
// Messages in: replies from replicas (votes, then acks), "unreachable" reports, time-outs, abort requests from
// in-doubt resolution, and the executor's report that the COMMIT record is durable (or was vetoed).
// Actions out: send a wire request, persist a decision record, finish.
//
// Invariants:
// - Commit is decided only when every participant voted yes. All yes -> `.persist(.commit)` alone; `com` is
//   sent only after the executor reports `.decisionDurable`. Until then the decision can still be vetoed
//   (`.decisionVetoed`: an in-doubt query answered "abort" first), which aborts.
// - Once committing, nothing turns the transaction into an abort: missing acks become "pending" and are
//   redelivered by the master until acknowledged.
// - Abort needs no log record (presumed abort): `abrt` goes to every participant not known unreachable.
// - `.persist(.end)` is emitted only after every participant acknowledged the commit.

/// The master side of 2PC for one transaction. Replies from one replica arrive in the order the requests
/// were sent (one pipelined connection per replica), so the first reply is the vote and later ones acks.
public struct Coordinator {
    public enum Phase: Equatable, Sendable { case preparing, deciding, committing, aborting, finished }

    public enum Event: Equatable {
        case start
        case reply(replica: String, WireReply)
        /// The replica could not be reached or the connection broke before it answered.
        case unreachable(replica: String, reason: String)
        /// The current phase ran out of time.
        case timeout
        /// In-doubt resolution asked for this transaction to abort (honoured only while preparing).
        case abortRequested(reason: String)
        /// The COMMIT record from `.persist(.commit)` is on stable storage: send `com`.
        case decisionDurable
        /// The executor did not write the COMMIT record because the transaction was already promised to abort.
        case decisionVetoed(reason: String)
    }

    public enum Action: Equatable {
        case send(replica: String, WireRequest)
        case persist(DecisionRecord)
        case finish(Outcome)
    }

    /// Why a transaction did not commit; the HTTP edge maps it to a status code.
    public enum Failure: Equatable, Sendable {
        /// A replica was unreachable or too slow: nothing was applied, a retry is safe.
        case unavailable
        /// A replica holds the key for another transaction (first one wins).
        case conflict
        /// A delete of a key that does not exist.
        case notFound
        /// Aborted for another reason (e.g. in-doubt resolution, a replica's own abort).
        case aborted
    }

    /// What one replica said, for the client's `"replicas"` list.
    public struct ReplicaReport: Equatable, Sendable {
        public var server: String
        public var status: Bool
        public var message: String
        public var code: ReplyCode?
    }

    public struct Outcome: Equatable, Sendable {
        public var seq: UInt64
        public var committed: Bool
        /// For a `txn`: the branch and reads every replica agreed on (from the yes votes).
        public var txn: TxnResult?
        public var failure: Failure?
        public var replicas: [ReplicaReport]
        /// Replicas that have not acknowledged a commit; the master keeps redelivering `com` to them.
        public var pendingCommit: [String]
        /// A commit's change index (set by the `TransactionManager`; 0 for an abort).
        public var index: UInt64 = 0
        /// Configured replicas that were out of the in-sync set, ejected, when it began (set by the manager).
        public var ejected: [String] = []
    }

    private enum ReplicaState: Equatable { case awaitingVote, yes, no, unreachable }

    /// What the coordinator knows of one participant. Kept in an array parallel to `participants` (a
    /// transaction has a handful): dictionaries keyed by replica id cost a hash per reply and four allocations
    /// per transaction on the master's event loop.
    private struct Peer {
        var state = ReplicaState.awaitingVote
        /// Requests sent and not answered yet.
        var outstanding = 0
        var report: ReplicaReport?
        var acked = false
    }

    public let seq: UInt64
    /// The phase-one request every participant receives (`put`, `del` or `txn`).
    public let prepareRequest: WireRequest
    public let participants: [String]
    public private(set) var phase: Phase = .preparing
    private var peers: [Peer]
    private var failure: Failure?
    private var started = false

    private var txnResult: TxnResult?
    /// A put's or del's key as the yes votes report it (`WireReply.created`), once they agree: its created seq
    /// after the put, before the del (what the watch history records).
    public private(set) var agreedCreated: UInt64?

    /// A txn's branch, reads and written keys' created seqs, as every yes vote reported them.
    public var agreedTxn: TxnResult? { txnResult }

    public init(seq: UInt64, op: WriteOp, participants: [String]) {
        self.init(seq: seq, prepare: op.prepareRequest(seq: seq), participants: participants)
    }

    public init(seq: UInt64, prepare: WireRequest, participants: [String]) {
        precondition(!participants.isEmpty, "a transaction needs at least one participant")
        precondition(prepare.seq == seq, "the prepare request must carry the transaction's seq")
        self.seq = seq
        prepareRequest = prepare
        self.participants = participants
        peers = Array(repeating: Peer(), count: participants.count)
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (phase, event) {
        case (.preparing, .start):
            guard !started else { return [] }
            started = true
            return participants.indices.map { index in
                peers[index].outstanding += 1
                return .send(replica: participants[index], prepareRequest)
            }
        case (.finished, _), (_, .start):
            return []
        case (_, .reply(let replica, let reply)):
            guard let index = participants.firstIndex(of: replica), peers[index].outstanding > 0 else { return [] }
            peers[index].outstanding -= 1
            return received(reply, from: index)
        case (_, .unreachable(let replica, let reason)):
            guard let index = participants.firstIndex(of: replica), peers[index].state != .unreachable else { return [] }
            peers[index].outstanding = 0
            peers[index].state = .unreachable
            if phase == .deciding {
                report(index, status: false, message: "connection lost after voting yes: \(reason)", code: nil)
                return []
            }
            if phase == .committing {
                report(index, status: false, message: "commit not acknowledged: \(reason)", code: nil)
                return finishCommitIfSettled()
            }
            report(index, status: false, message: reason, code: nil)
            return beginAbort(because: .unavailable)
        case (.preparing, .timeout):
            for index in peers.indices where peers[index].state == .awaitingVote {
                report(index, status: false, message: "no vote before the prepare timeout", code: .timeout)
            }
            return beginAbort(because: .unavailable)
        case (.committing, .timeout):
            for index in peers.indices where !peers[index].acked && peers[index].state != .unreachable {
                report(index, status: false, message: "commit not acknowledged before the timeout", code: .timeout)
            }
            return finishCommit()
        case (.aborting, .timeout):
            return finishAbort()
        case (.deciding, .timeout):
            return []
        case (.deciding, .decisionDurable):
            phase = .committing
            return participants.indices.map { index in
                peers[index].outstanding += 1
                return .send(replica: participants[index], .com(seq))
            }
        case (.deciding, .decisionVetoed(let reason)):
            for index in peers.indices where peers[index].state == .yes {
                report(index, status: false, message: reason, code: .aborted)
            }
            phase = .preparing
            return beginAbort(because: .aborted)
        case (_, .decisionDurable), (_, .decisionVetoed):
            return []
        case (.preparing, .abortRequested(let reason)):
            for index in peers.indices where peers[index].state == .awaitingVote {
                report(index, status: false, message: reason, code: .aborted)
            }
            return beginAbort(because: .aborted)
        case (_, .abortRequested):
            return []
        }
    }

    // MARK: - Transitions

    private mutating func report(_ index: Int, status: Bool, message: String, code: ReplyCode?) {
        peers[index].report = ReplicaReport(server: participants[index], status: status, message: message, code: code)
    }

    private mutating func received(_ reply: WireReply, from index: Int) -> [Action] {
        switch phase {
        case .preparing:
            guard peers[index].state == .awaitingVote else { return [] }
            report(index, status: reply.status, message: reply.message, code: reply.code)
            guard reply.status else {
                peers[index].state = .no
                return beginAbort(because: Self.failure(for: reply.code))
            }
            peers[index].state = .yes
            if let created = reply.created {
                // The key's created seq, as every replica holds it: they must agree, as on a txn's branch.
                if let first = agreedCreated, first != created {
                    peers[index].report?.status = false
                    peers[index].report?.message = "holds key \(created == seq ? "absent" : "created at \(created)") "
                        + "where others differ: replicas differ; run GET /status?verify=1"
                    return beginAbort(because: .aborted)
                }
                agreedCreated = created
            }
            if let txn = reply.txn {
                // Every replica holds the same committed state, so every replica must choose the same branch.
                if let first = txnResult, first != txn {
                    peers[index].report?.status = false
                    peers[index].report?.message = "chose a different branch or read different values than the "
                        + "others: replicas differ; run GET /status?verify=1"
                    return beginAbort(because: .aborted)
                }
                txnResult = txn
            }
            guard peers.allSatisfy({ $0.state == .yes }) else { return [] }
            phase = .deciding
            return [.persist(.commit(seq: seq, participants: participants))]
        case .deciding:
            return []
        case .committing:
            guard peers[index].outstanding == 0 else { return [] }
            if reply.status {
                peers[index].acked = true
                report(index, status: true, message: "committed", code: .ok)
            } else {
                report(index, status: false, message: "commit not applied: \(reply.message)", code: reply.code)
            }
            return finishCommitIfSettled()
        case .aborting:
            if peers[index].state == .yes, reply.status, peers[index].report?.status == true {
                peers[index].report?.message = "prepared, then rolled back (abrt)"
            }
            if peers[index].state == .awaitingVote {
                peers[index].state = reply.status ? .yes : .no
                if peers[index].report == nil || peers[index].report?.code == .timeout {
                    report(index, status: reply.status, message: reply.message, code: reply.code)
                }
            }
            return peers.allSatisfy({ $0.outstanding == 0 }) ? finishAbort() : []
        case .finished:
            return []
        }
    }

    private mutating func beginAbort(because reason: Failure) -> [Action] {
        guard phase == .preparing else {
            return phase == .aborting && peers.allSatisfy({ $0.outstanding == 0 }) ? finishAbort() : []
        }
        phase = .aborting
        failure = reason
        var actions: [Action] = []
        for index in peers.indices where peers[index].state != .unreachable {
            peers[index].outstanding += 1
            actions.append(.send(replica: participants[index], .abrt(seq)))
        }
        if actions.isEmpty { actions += finishAbort() }
        return actions
    }

    private mutating func finishCommitIfSettled() -> [Action] {
        let settled = peers.allSatisfy { $0.acked || $0.state == .unreachable || $0.outstanding == 0 }
        return settled ? finishCommit() : []
    }

    private mutating func finishCommit() -> [Action] {
        phase = .finished
        let pending = participants.indices.filter { !peers[$0].acked }.map { participants[$0] }
        let outcome = Outcome(seq: seq, committed: true, txn: txnResult, failure: nil, replicas: orderedReports(),
                              pendingCommit: pending)
        return pending.isEmpty ? [.persist(.end(seq: seq)), .finish(outcome)] : [.finish(outcome)]
    }

    private mutating func finishAbort() -> [Action] {
        phase = .finished
        return [.finish(Outcome(seq: seq, committed: false, txn: nil, failure: failure ?? .aborted,
                                replicas: orderedReports(), pendingCommit: []))]
    }

    /// The participants the current phase still waits for: no vote yet while preparing, no ack while committing.
    public var awaited: [String] {
        switch phase {
        case .preparing:
            return participants.indices.filter { peers[$0].state == .awaitingVote }.map { participants[$0] }
        case .committing:
            return participants.indices.filter { !peers[$0].acked && peers[$0].state != .unreachable }
                .map { participants[$0] }
        case .deciding, .aborting, .finished:
            return []
        }
    }

    /// Once the decision is durable (committing), the outcome the client may be told already: committed, with
    /// every replica's yes vote. Acks still arriving afterwards only complete delivery.
    public var committedOutcome: Outcome? {
        guard phase == .committing else { return nil }
        return Outcome(seq: seq, committed: true, txn: txnResult, failure: nil, replicas: orderedReports(),
                       pendingCommit: [])
    }

    private func orderedReports() -> [ReplicaReport] {
        participants.indices.map { index in
            peers[index].report
                ?? ReplicaReport(server: participants[index], status: false, message: "no answer", code: nil)
        }
    }

    private static func failure(for code: ReplyCode) -> Failure {
        switch code {
        case .conflict, .superseded: return .conflict
        case .notFound: return .notFound
        case .timeout, .busy, .notSynced, .unauthorized, .fenced: return .unavailable
        case .ok, .aborted, .badRequest, .unknownTransaction, .committed, .inDoubt: return .aborted
        }
    }
}
