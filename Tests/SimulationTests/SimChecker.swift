import KVCommon

/// The safety invariants, checked as events happen (so every step is checked) and at quiescence.
///
/// A seq's outcome is witnessed by irrevocable announcements (a commit ack or abort ack sent by a replica, a
/// `qry` answer, the master's resolve answer, its durable COMMIT record, the outcome told to the client) and by
/// the decision records in each replica's current log (records lost in a crash were never announced and do
/// not count). The invariants:
/// - agreement: no seq has both a commit witness and an abort witness;
/// - commit-record: a replica commits a seq only if the master's COMMIT record for it is durable;
/// - client-commit: the master tells the client "committed" only with a durable COMMIT, and each replica it
///   counted as acknowledged has applied the commit;
/// - end-record: END (the master forgets the seq) only when every participant's COMMIT record is durable;
/// - reply-durability: a yes vote or a commit ack leaves a replica only once the record behind it is durable;
/// - replay: whenever a replica's log is fully synced, replaying it reproduces the live state.
final class SimChecker {
    private(set) var violation: String?
    private let context: SimContext
    private var replicas: [SimReplica] = []
    private weak var master: SimMaster?
    private var commitWitness: [UInt64: String] = [:]
    private var abortWitness: [UInt64: String] = [:]
    private(set) var started: [UInt64] = []
    private(set) var outcomes: [UInt64: Bool] = [:]
    /// Seqs the master logged END for (it forgot them: presumed abort answers "aborted" from then on).
    private var ended: Set<UInt64> = []
    /// The state a restart would rebuild: each replica's durable log, replayed incrementally.
    private var shadows: [String: Participant] = [:]

    init(context: SimContext) { self.context = context }

    func attach(master: SimMaster, replicas: [SimReplica]) {
        self.master = master
        self.replicas = replicas
        for replica in replicas { shadows[replica.name] = Participant(server: replica.name) }
    }

    /// Breaks the reference cycles at the end of a run.
    func detach() { replicas = [] }

    func fail(_ invariant: String, _ detail: String) {
        guard violation == nil else { return }
        violation = "\(invariant): \(detail)"
        context.trace("VIOLATION \(violation!)")
    }

    // MARK: - Agreement

    private func announce(_ seq: UInt64, committed: Bool, by who: String) {
        if committed {
            if let other = abortWitness[seq] { fail("agreement", "seq \(seq) committed (\(who)) but aborted (\(other))") }
            for replica in replicas where replica.hasAbort(seq) {
                fail("agreement", "seq \(seq) committed (\(who)) but \(replica.name) logged ABORT")
            }
            if commitWitness[seq] == nil { commitWitness[seq] = who }
        } else {
            if let other = commitWitness[seq] { fail("agreement", "seq \(seq) aborted (\(who)) but committed (\(other))") }
            for replica in replicas where replica.hasCommit(seq) {
                fail("agreement", "seq \(seq) aborted (\(who)) but \(replica.name) logged COMMIT")
            }
            if abortWitness[seq] == nil { abortWitness[seq] = who }
        }
    }

    // MARK: - Replica events

    func replicaAppended(_ replica: SimReplica, _ record: ReplicaRecord) {
        if case .commit(let seq) = record {
            if master?.durableCommits.contains(seq) != true {
                fail("commit-record", "\(replica.name) committed \(seq) but the master has no durable COMMIT record for it")
            }
            if let other = abortWitness[seq] { fail("agreement", "\(replica.name) committed \(seq) but it was aborted (\(other))") }
            for peer in replicas where peer.hasAbort(seq) {
                fail("agreement", "\(replica.name) committed \(seq) but \(peer.name) logged ABORT")
            }
        }
        if case .abort(let seq) = record {
            if let other = commitWitness[seq] { fail("agreement", "\(replica.name) aborted \(seq) but it was committed (\(other))") }
            for peer in replicas where peer.hasCommit(seq) {
                fail("agreement", "\(replica.name) aborted \(seq) but \(peer.name) logged COMMIT")
            }
        }
    }

    /// A reply is leaving `replica` (it reached the network). Written with `if`s rather than a `switch` over
    /// `WireCommand`, so new commands do not break this target.
    func replicaSends(_ replica: SimReplica, request: WireRequest, reply: WireReply) {
        guard let seq = request.seq else { return }
        let command = request.command
        if (command == .put || command == .del) && reply.status
            && !replica.hasPrepare(seq, durableOnly: true) && !replica.hasCommit(seq, durableOnly: true) {
            fail("reply-durability", "\(replica.name) voted yes for \(seq) before its PREPARE (or COMMIT) record was durable")
        }
        if command == .com && reply.status {
            if !replica.hasCommit(seq, durableOnly: true) {
                fail("reply-durability", "\(replica.name) acknowledged com \(seq) before its COMMIT record was durable")
            }
            announce(seq, committed: true, by: "\(replica.name) acked com")
        }
        if command == .abrt && reply.status { announce(seq, committed: false, by: "\(replica.name) acked abrt") }
        if command == .qry && reply.status && reply.code == .committed {
            announce(seq, committed: true, by: "\(replica.name) answered qry committed")
        }
        if command == .qry && reply.status && reply.code == .aborted {
            announce(seq, committed: false, by: "\(replica.name) answered qry aborted")
        }
    }

    func replicaSynced(_ replica: SimReplica, newlyDurable: [ReplicaRecord]) {
        guard var shadow = shadows[replica.name] else { return }
        for record in newlyDurable { shadow.replay(record, nowMs: 0) }
        shadows[replica.name] = shadow
        guard replica.durable == replica.log.count else { return }
        let live = replica.participant
        let liveStat = live.stat(nowMs: 0)
        let replayed = shadow.stat(nowMs: 0)
        if liveStat.digest != replayed.digest || liveStat.keys != replayed.keys
            || liveStat.lastCommittedSeq != replayed.lastCommittedSeq || live.inDoubt != shadow.inDoubt
            || live.store != shadow.store {
            fail("replay", "\(replica.name): replaying the synced log gives digest \(replayed.digestHex) keys \(replayed.keys) "
                + "in doubt \(shadow.inDoubt), live has \(liveStat.digestHex) keys \(liveStat.keys) in doubt \(live.inDoubt)")
        }
        for key in context.config.keys where live.lockHolder(of: key) != shadow.lockHolder(of: key) {
            fail("replay", "\(replica.name): key \(key) locked by \(String(describing: live.lockHolder(of: key))) live, "
                + "\(String(describing: shadow.lockHolder(of: key))) after replay")
        }
    }

    // MARK: - Master events

    func masterStarted(_ seq: UInt64) { started.append(seq) }

    func masterCommitDurable(_ seq: UInt64) { announce(seq, committed: true, by: "master COMMIT record") }

    func masterResolved(_ seq: UInt64, _ answer: SimMaster.Resolution) {
        switch answer {
        case .commit: announce(seq, committed: true, by: "master resolved commit")
        case .abort:
            // After END the master has forgotten the seq and presumes abort: textbook presumed abort, safe
            // because END implies every participant's COMMIT is durable (the end-record invariant), so no
            // replica can still be in doubt to act on the answer. Any effect would show as an ABORT record.
            if !ended.contains(seq) { announce(seq, committed: false, by: "master resolved abort") }
        case .pending: break
        }
    }

    func masterFinished(_ outcome: Coordinator.Outcome, durableCommit: Bool) {
        let seq = outcome.seq
        outcomes[seq] = outcome.committed
        guard outcome.committed else {
            announce(seq, committed: false, by: "master told the client aborted")
            return
        }
        if !durableCommit { fail("client-commit", "master finished \(seq) committed without a durable COMMIT record") }
        announce(seq, committed: true, by: "master told the client committed")
        for report in outcome.replicas where report.status && !outcome.pendingCommit.contains(report.server) {
            guard let replica = replicas.first(where: { $0.name == report.server }) else { continue }
            if !replica.hasCommit(seq) {
                fail("client-commit", "master finished \(seq) committed counting \(replica.name) as acknowledged, "
                    + "but \(replica.name) has not applied it")
            }
        }
    }

    func masterEnded(_ seq: UInt64) {
        ended.insert(seq)
        for replica in replicas where !replica.hasCommit(seq, durableOnly: true) {
            fail("end-record", "master logged END \(seq) (forgets the commit) but \(replica.name) has no durable COMMIT record")
        }
    }

    // MARK: - Quiescence

    /// After healing: everything decided everywhere, nothing locked or in doubt, replicas identical.
    func checkQuiescent() {
        guard let master else { return }
        if !master.isIdle {
            fail("quiescence", "master still busy: running \(master.transactions.keys.sorted()), "
                + "undelivered commits \(master.delivery.keys.sorted()), COMMIT without END \(master.pending.keys.sorted())")
        }
        for replica in replicas {
            if !replica.up || !replica.isIdle {
                fail("quiescence", "\(replica.name) not idle: up \(replica.up), unsynced \(replica.unsynced), "
                    + "in doubt \(replica.participant.inDoubt), parked reads \(replica.parked.count)")
            }
            for key in context.config.keys {
                if let holder = replica.participant.lockHolder(of: key) {
                    fail("quiescence", "\(replica.name) still locks key \(key) for \(holder)")
                }
            }
        }
        guard let first = replicas.first else { return }
        let reference = first.participant.stat(nowMs: 0)
        for replica in replicas.dropFirst() {
            let stat = replica.participant.stat(nowMs: 0)
            if stat.digest != reference.digest || stat.keys != reference.keys || replica.participant.store != first.participant.store {
                fail("quiescence", "\(replica.name) digest \(stat.digestHex) (\(stat.keys) keys) differs from "
                    + "\(first.name) digest \(reference.digestHex) (\(reference.keys) keys)")
            }
        }
        for seq in started {
            let committedOn = replicas.filter { $0.hasCommit(seq) }.map(\.name)
            if !committedOn.isEmpty && committedOn.count != replicas.count {
                fail("quiescence", "seq \(seq) committed only on \(committedOn)")
            }
            if outcomes[seq] == true && committedOn.count != replicas.count {
                fail("quiescence", "seq \(seq) was reported committed but is committed only on \(committedOn)")
            }
        }
    }
}
