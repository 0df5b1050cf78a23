import KVCommon

/// The safety invariants, checked as events happen (so every step is checked) and at quiescence.
///
/// A seq's outcome is witnessed by irrevocable announcements (a commit or abort ack a replica sent, a `qry`
/// answer, a master's durable COMMIT record, the outcome told to a client) and by the decision records in each
/// replica's current log. The committed history is a model per key (`SimModel`): each write in the order its
/// COMMIT became durable (two writes of one key are serialized by its lock, so that is the order replicas apply
/// them), with transactions evaluated by the model itself.
/// The invariants:
/// - seq-unique: no replica gets two different operations under one seq;
/// - agreement: no seq has both a commit witness and an abort witness;
/// - commit-record: a replica commits a seq only if a master's COMMIT record for it is durable;
/// - client-commit: a client is told "committed" only with a durable COMMIT;
/// - reply-durability: a yes vote or a commit ack leaves a replica only once the record behind it is durable;
/// - versions: a put commits only above the version of the key it overwrites (versions grow in commit order);
/// - replay: whenever a replica's log is fully synced, replaying it reproduces the live state;
/// - linearizable reads: a read returns a committed version, and never one older than a write acknowledged
///   before the read began;
/// - index: each master publishes indexes densely and in order, once each, for durable commits, with the changes
///   the model says the write made;
/// - txn-branch: the branch the replicas chose for a transaction is the one the model's compares give;
/// - lease-removal: a lease's removal deletes only keys whose current value is the write that attached them to
///   that lease, and an attachment commits only while its lease exists;
/// - lease-early: no expiry starts before the time a client was told the lease lives until;
/// - at quiescence: nothing in flight, locked or in doubt; every configured replica in sync and holding
///   exactly the model's state (no acknowledged write lost, no value that was never committed), reserved keys
///   included; and, every lease having expired, nothing of any lease left (lease-left).
final class SimChecker {
    private(set) var violation: String?
    private let context: SimContext
    private var replicas: [SimReplica] = []
    private var commitWitness: [UInt64: String] = [:]
    private var abortWitness: [UInt64: String] = [:]
    private var ended: Set<UInt64> = []
    private(set) var durableCommits: Set<UInt64> = []
    private var operations: [UInt64: SimOp] = [:]
    private var arrived: [UInt64: (op: SimOp, replica: String)] = [:]
    private var seen: [String: [UInt64: SimOp]] = [:]
    /// The committed writes, per key in decision order.
    private var model = SimModel()
    /// What each committed seq did in the model: a transaction's branch, the changes watchers must see.
    private var applied: [UInt64: SimModel.Applied] = [:]
    /// Per lease, the time (the masters' clock, ms) until which a client was told it lives: its grant's request
    /// plus the TTL, or a keepalive's answer plus the TTL.
    private var promised: [UInt64: Int64] = [:]
    private var reads: [Int: (key: [UInt8], step: Int)] = [:]
    private var nextRead = 0
    /// The state a restart would rebuild: each replica's durable log, replayed incrementally.
    private var shadows: [String: Participant] = [:]

    init(context: SimContext) { self.context = context }

    func attach(replicas: [SimReplica]) {
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

    // MARK: - Master events

    /// A master sent a prepare: the seq's operation, for the model (the latest one sent: a seq whose first
    /// prepare reached no replica before its master crashed may be issued again harmlessly).
    func prepareSent(_ seq: UInt64, _ request: WireRequest, master: Int) {
        if arrived[seq] == nil { operations[seq] = Self.operation(request) }
    }

    /// A prepare reached a replica: from here on no other operation may reach that replica under its seq (it
    /// would answer "already committed" or "already aborted" for the other one). Replicas that saw different
    /// operations under one seq (a master that lost its decision log reused a seq only a replica out of sync
    /// had seen) never meet: only a transaction's own participants are asked about it.
    func prepareArrived(_ seq: UInt64, _ request: WireRequest, at replica: String) {
        let op = Self.operation(request)
        if let known = seen[replica]?[seq], known != op {
            fail("seq-unique", "\(replica) got seq \(seq) prepared for \(known.brief) and for \(op.brief)")
        }
        seen[replica, default: [:]][seq] = op
        if let first = arrived[seq], first.op != op {
            // The seq's earlier operation lives only on replicas that forgot it (wiped) or never meet this one: a
            // new transaction under an old number, whose outcome is its own.
            commitWitness[seq] = nil
            abortWitness[seq] = nil
            durableCommits.remove(seq)
        }
        if arrived[seq]?.op != op { arrived[seq] = (op, replica) }
        operations[seq] = op
    }

    private static func operation(_ request: WireRequest) -> SimOp { SimOp(request) }

    // MARK: - The change index (watch)

    /// Every index published since the decision log was last restored from a backup (which rewinds it), with
    /// the seq of its changes; and per master instance the index it must publish next.
    private var publishedIndexes: [UInt64: UInt64] = [:]
    private var nextIndex: [Int: UInt64] = [:]

    /// A master starts: it continues above every index its decision log names (published or not), and above every
    /// index published before (the log only loses what was never durable, so never a published index).
    func masterStarted(_ master: Int, history: ChangeHistory) {
        if let newest = publishedIndexes.keys.max(), history.lastIndex < newest {
            fail("index", "master #\(master) starts at index \(history.lastIndex), below published index \(newest)")
        }
        nextIndex[master] = history.lastIndex + 1
    }

    func decisionLogRestored() { publishedIndexes = [:] }

    /// Indexes are published densely and in order, once each, for a durable commit, with the changes its write made.
    func changesPublished(_ index: UInt64, _ changes: [ChangeHistory.Change], master: Int) {
        if index != nextIndex[master] {
            fail("index", "master #\(master) published index \(index), expected \(nextIndex[master] ?? 0)")
        }
        nextIndex[master] = index + 1
        // Each change's version is its seq; an index without changes (a transaction that wrote nothing) names none.
        guard let seq = changes.first?.version else { return }
        if let other = publishedIndexes.updateValue(seq, forKey: index), other != seq {
            fail("index", "index \(index) published for seq \(seq) and for seq \(other)")
        }
        guard durableCommits.contains(seq) else {
            return fail("index", "index \(index) published for seq \(seq) before its COMMIT was durable")
        }
        guard let expected = applied[seq]?.changes else {
            return fail("index", "index \(index) for an unknown operation \(seq)")
        }
        let seen = changes.map { ($0.kind == .put, $0.key, $0.kind == .put ? $0.value : []) }
        if seen.count != expected.count || !zip(seen, expected).allSatisfy({ $0.0 == $1.isPut && $0.1 == $1.key && $0.2 == $1.value }) {
            return fail("index", "index \(index) publishes \(changes.count) change(s) of seq \(seq), not the \(expected.count) "
                + "its \(operations[seq]?.brief ?? "write") made")
        }
        for change in changes where change.index != index || change.version != seq {
            fail("index", "index \(index): \(change)")
        }
        // A lease's expiry shows its deletes of client keys as `expire`; nothing else does.
        for change in changes where change.kind == .expire && LeaseKeys.isReserved(change.key) {
            fail("index", "index \(index): a reserved key published as expired")
        }
    }

    func masterCommitDurable(_ seq: UInt64, master: Int) {
        guard durableCommits.insert(seq).inserted else { return }
        announce(seq, committed: true, by: "master #\(master) COMMIT record")
        guard let op = operations[seq] else { return fail("commit-record", "COMMIT \(seq) for an unknown operation") }
        var versionWentBack = false
        let result = model.commit(op, seq: seq, versionWentBack: &versionWentBack)
        applied[seq] = result
        if versionWentBack {
            fail("versions", "\(seq) committed on a key at a version not below it: its version would go back")
        }
        for violation in result.violations { fail("lease-removal", violation) }
    }

    func writeAnswered(_ id: UInt64, _ answer: TransactionManager.WriteAnswer, master: Int) {
        guard case .outcome(let outcome) = answer else { return }
        let seq = outcome.seq
        guard outcome.committed else {
            // An abort of a seq whose prepare reached no replica is the master's alone; a master whose decision
            // log was restored from a backup may issue that seq again, harmlessly.
            if arrived[seq] != nil { announce(seq, committed: false, by: "master #\(master) told the client aborted") }
            return
        }
        if !durableCommits.contains(seq) {
            return fail("client-commit", "master #\(master) told the client \(seq) committed without a durable COMMIT")
        }
        announce(seq, committed: true, by: "master #\(master) told the client committed")
        if let branch = applied[seq]?.succeeded, let told = outcome.txn?.succeeded, branch != told {
            fail("txn-branch", "seq \(seq): the replicas took the \(told ? "success" : "failure") branch, the committed "
                + "history says \(branch ? "success" : "failure")")
        }
        model.acknowledge(seq, keys: (applied[seq]?.changes ?? []).map(\.key), step: context.step)
    }

    func masterAnswered(_ reply: WireReply, master: Int) {
        guard let seq = reply.seq, reply.status else { return }
        if reply.code == .committed { announce(seq, committed: true, by: "master #\(master) answered qry committed") }
        // After END the master has forgotten the seq and presumes abort: textbook presumed abort, harmless because
        // no participant can still be in doubt then. Any effect would show as an ABORT record, which is checked.
        if reply.code == .aborted && !ended.contains(seq) {
            announce(seq, committed: false, by: "master #\(master) answered qry aborted")
        }
    }

    func masterEnded(_ seq: UInt64) { ended.insert(seq) }

    // MARK: - Reads

    func readStarted(_ key: [UInt8]) -> Int {
        nextRead += 1
        reads[nextRead] = (key, context.step)
        context.stats.reads += 1
        return nextRead
    }

    /// A read's answer: a committed version, not older than any write acknowledged before the read began.
    func readAnswered(_ id: Int, key: [UInt8], reply: WireReply, replica: String) {
        guard let read = reads.removeValue(forKey: id) else { return }
        let entries = model.history[key] ?? []
        let lastAcked = entries.lastIndex { ($0.acked ?? Int.max) < read.step } ?? -1
        if reply.status {
            guard let index = entries.firstIndex(where: { $0.seq == reply.seq }) else {
                return fail("linearizable-read", "\(replica) returned \(key.brief) at version \(reply.seq ?? 0), "
                    + "which no durable COMMIT wrote")
            }
            if entries[index].value != reply.value {
                fail("linearizable-read", "\(replica) returned another value for \(key.brief) at version \(reply.seq ?? 0)")
            }
            if index < lastAcked {
                fail("linearizable-read", "\(replica) returned \(key.brief) at version \(reply.seq ?? 0), but version "
                    + "\(entries[lastAcked].seq) was acknowledged before the read began (stale read)")
            }
        } else if reply.code == .notFound {
            let absentAt = (lastAcked == -1 ? [-1] : []) + entries.indices.filter { $0 >= lastAcked && entries[$0].value == nil }
            if absentAt.isEmpty {
                fail("linearizable-read", "\(replica) answered \(key.brief) not found, but version "
                    + "\(entries[lastAcked].seq) was acknowledged before the read began (stale read)")
            }
        }
    }

    // MARK: - Replica events

    func replicaAppended(_ replica: SimReplica, _ record: ReplicaRecord) {
        if case .commit(let seq) = record {
            if !durableCommits.contains(seq) {
                fail("commit-record", "\(replica.name) committed \(seq) but no master has a durable COMMIT record for it")
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

    /// A reply is leaving `replica` (it reached the network).
    func replicaSends(_ replica: SimReplica, request: WireRequest, reply: WireReply) {
        guard let seq = request.seq else { return }
        let command = request.command
        if (command == .put || command == .del || command == .txn) && reply.status
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

    func replicaWiped(_ replica: SimReplica) {
        shadows[replica.name] = Participant(server: replica.name)
        seen[replica.name] = nil
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
        var indexed: [[UInt8]] = []
        live.keyIndex.forEach(prefix: [], after: []) { indexed.append($0); return true }
        if indexed != live.store.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            fail("index", "\(replica.name): the ordered key index holds \(indexed.count) keys out of step with the "
                + "store's \(live.store.count)")
        }
        for key in context.config.keys where live.lockHolder(of: key) != shadow.lockHolder(of: key) {
            fail("replay", "\(replica.name): key \(key.brief) locked by \(String(describing: live.lockHolder(of: key))) "
                + "live, \(String(describing: shadow.lockHolder(of: key))) after replay")
        }
    }

    // MARK: - Quiescence

    /// After healing: nothing in flight, locked or in doubt; every configured replica in sync and holding exactly
    /// the committed history's last write of every key.
    func checkQuiescent(master: SimMaster, configured: [SimReplica]) {
        guard let view = master.view else { return fail("quiescence", "the master is not running") }
        if !master.isIdle {
            fail("quiescence", "master still busy: \(master.manager?.inFlight ?? -1) running, "
                + "\(master.manager?.pendingCommits ?? -1) commits undelivered, \(master.inbox.count) events queued")
        }
        if !view.syncing.isEmpty { fail("quiescence", "still syncing: \(view.syncing.sorted())") }
        for replica in configured {
            if !replica.up || !replica.isIdle || !replica.participant.joined {
                fail("quiescence", "\(replica.name) not idle: up \(replica.up), unsynced \(replica.unsynced), "
                    + "in doubt \(replica.participant.inDoubt), parked reads \(replica.parked.count), "
                    + "joined \(replica.participant.joined)")
            }
            let keys = Set(context.config.keys + model.keys + replica.participant.store.keys)
            for key in keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                if let holder = replica.participant.lockHolder(of: key) {
                    fail("quiescence", "\(replica.name) still locks key \(key.brief) for \(holder)")
                }
                let expected = model.entry(key)
                let entry = replica.participant.store[key]
                if entry?.value != expected?.value || entry?.version != expected?.version {
                    let wanted = expected.map { "\($0.value.brief) at \($0.version)" } ?? "absent"
                    let found = entry.map { "\($0.value.brief) at \($0.version)" } ?? "absent"
                    fail("lost-write", "\(replica.name) holds \(key.leaseBrief) = \(found), the committed history ends in \(wanted)")
                }
            }
        }
        // Healing lets every lease expire (no client keeps one alive then).
        for leftover in model.leaseLeftovers() { fail("lease-left", leftover) }
    }

    // MARK: - Leases

    /// A client learned that lease `id` lives until `untilMs` at least.
    func leasePromised(_ id: UInt64, untilMs: Int64) {
        promised[id] = max(promised[id] ?? 0, untilMs)
    }

    /// A master starts the removal of lease `id` because it expired: never before the time a client was promised.
    func leaseExpiryStarted(_ id: UInt64, nowMs: Int64, master: Int) {
        guard let until = promised[id], nowMs < until else { return }
        fail("lease-early", "master #\(master) expires lease \(id) at \(nowMs) ms, but a client was told it lives until "
            + "\(until) ms")
    }
}

extension Array where Element == UInt8 {
    var brief: String { String(decoding: self, as: UTF8.self) }
}
