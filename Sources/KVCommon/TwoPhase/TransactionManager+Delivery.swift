// Commit delivery and in-doubt answers: commits whose acks did not all arrive are re-sent with backoff until
// each participant acknowledges, then END is logged (a commit is never turned into an abort); replicas that
// report in-doubt seqs, or ask about one, get the outcome the registry and the decision log give.

extension TransactionManager {
    /// Keeps sending `com` for `seq` to `replicas` until each acknowledges.
    mutating func track(_ seq: UInt64, _ replicas: [String], into actions: inout [Action]) {
        deliveries[seq] = Delivery(unacked: Set(replicas))
        redeliver(seq, into: &actions)
    }

    /// One round of `com` to every participant of `seq` that has not acknowledged, then the next round's timer
    /// (50 ms doubling up to 5 s).
    mutating func redeliver(_ seq: UInt64, into actions: inout [Action]) {
        guard var delivery = deliveries[seq] else { return }
        precondition(journal.pending[seq] != nil, "commit \(seq) delivered without a durable COMMIT record")
        delivery.attempts += 1
        let configured = delivery.unacked.sorted().compactMap { settings.replica($0) }
        for replica in configured { actions.append(.send(replica, .com(seq), .deliver(seq))) }
        guard !configured.isEmpty else {
            // Owed only to replicas no longer configured. One may still run, in doubt, and ask: ending the commit
            // would make presumed abort tell it "aborted". So the COMMIT stays (compaction carries it), queries
            // are answered "committed", and delivery resumes if the replica is configured again.
            if !delivery.parked {
                actions.append(.note(.notice, "commit \(seq): still owed to \(delivery.unacked.sorted().joined(separator: ", ")), "
                    + "no longer configured; kept in the decision log until configured again and synced"))
            }
            delivery.parked = true
            deliveries[seq] = delivery
            return
        }
        delivery.parked = false
        deliveries[seq] = delivery
        let backoffMs = min(5000, 50 << min(delivery.attempts, 10))
        actions.append(.startTimer(.redeliver(seq), ms: backoffMs))
    }

    mutating func acknowledged(_ seq: UInt64, by replica: String, into actions: inout [Action]) {
        // In place: a copy of the entry would make removing from its set copy the set.
        guard deliveries[seq]?.unacked.remove(replica) != nil, deliveries[seq]?.unacked.isEmpty == true else { return }
        deliveries[seq] = nil
        actions.append(.cancelTimer(.redeliver(seq)))
        actions += journal.end(seq: seq).map(Action.log)
        actions.append(.note(.info, "commit \(seq) acknowledged by every participant"))
    }

    /// Commits parked for replicas that a reload configured again go out to them.
    mutating func resumeParkedDeliveries(into actions: inout [Action]) {
        for seq in deliveries.keys.sorted() where deliveries[seq]!.parked
            && deliveries[seq]!.unacked.contains(where: { settings.replica($0) != nil }) {
            redeliver(seq, into: &actions)
        }
    }

    /// `replica` was just synced from an in-sync replica: it holds every commit decided before, so it owes no
    /// acks (a wiped replica could never acknowledge a `com` for a transaction it no longer knows).
    mutating func replicaSynced(_ replica: String, into actions: inout [Action]) {
        for seq in deliveries.keys.sorted() where deliveries[seq]!.unacked.contains(replica) {
            acknowledged(seq, by: replica, into: &actions)
        }
    }

    /// The outcome to tell a replica that is in doubt about `seq`. A transaction still preparing here is vetoed
    /// (it will abort), so the answer "abort" stays true forever.
    mutating func resolve(_ seq: UInt64, reason: String, into actions: inout [Action]) -> Resolution {
        switch running[seq]?.registration {
        case .running?:
            running[seq]!.registration = .vetoed
            drive(seq, .abortRequested(reason: reason), into: &actions)
            return .abort
        case .vetoed?:
            return .abort
        case .committing?:
            return journal.wasCommitted(seq) ? .commit : .pending
        case nil:
            // Not running: it finished. Its commit, if any, is in the decision log or the recent-commit memory;
            // without one it aborted, if this log saw it issued at all.
            if journal.wasCommitted(seq) { return .commit }
            return seq < state.presumeAbortFrom || seq > lastIssued ? .unknown : .abort
        }
    }

    /// The answer to `seq;qry;;` on query_listen.
    mutating func queryAnswer(_ seq: UInt64, into actions: inout [Action]) -> WireReply {
        let master = settings.masterID
        let reply: WireReply
        switch resolve(seq, reason: "a replica asked for the outcome of \(seq) before it was decided", into: &actions) {
        case .commit: reply = WireReply(status: true, code: .committed, message: "committed", seq: seq, server: master)
        case .abort: reply = WireReply(status: true, code: .aborted, message: "aborted", seq: seq, server: master)
        case .pending:
            reply = WireReply(status: false, code: .busy, message: "commit being recorded; ask again", seq: seq,
                              server: master)
        case .unknown:
            reply = WireReply(status: false, code: .unknownTransaction, message: "this master's decision log does not "
                + "cover \(seq) (it was lost or rewound, or another master issued it); ask the participants", seq: seq,
                              server: master)
        }
        actions.append(.note(.info, "qry \(seq): answered \(reply.code.rawValue)"))
        return reply
    }

    /// Resolves the in-doubt transactions a freshly connected replica reported.
    mutating func resolveInDoubt(_ replica: ClusterConfig.Replica, _ stat: ReplicaStat, into actions: inout [Action]) {
        for item in stat.inDoubt {
            let seq = item.seq
            let reason = "\(replica.id) reconnected while transaction \(seq) was undecided"
            switch resolve(seq, reason: reason, into: &actions) {
            case .commit:
                actions.append(.note(.notice, "in-doubt \(seq) on \(replica.id): logged as committed, sending com"))
                actions.append(.send(replica, .com(seq), .resolve(seq, commit: true)))
            case .abort:
                actions.append(.note(.notice, "in-doubt \(seq) on \(replica.id): no commit record, sending abrt "
                    + "(presumed abort)"))
                actions.append(.send(replica, .abrt(seq), .resolve(seq, commit: false)))
            case .pending:
                actions.append(.note(.info, "in-doubt \(seq) on \(replica.id): commit being recorded; the running "
                    + "transaction sends com"))
            case .unknown:
                actions.append(.note(.warning, "in-doubt \(seq) on \(replica.id): this decision log does not cover it; "
                    + "the replica asks the transaction's other participants"))
            }
        }
    }

    mutating func replied(_ replica: ClusterConfig.Replica, _ call: Call, _ reply: WireReply,
                          into actions: inout [Action]) {
        if reply.code == .fenced { observeRefusal(replica, reply, into: &actions) }
        replicaAnswered(replica, into: &actions)
        switch call {
        case .txn(let seq):
            drive(seq, .reply(replica: replica.id, reply), into: &actions)
        case .deliver(let seq), .resolve(let seq, commit: true):
            // A replica that joined after `seq` does not know it, but its transfer copied its effects (a source
            // never holds an undecided transaction when a target joins): that is an acknowledgement too.
            let joinedAfter = reply.code == .unknownTransaction
                && slots.contains { $0.replica == replica && !$0.syncing && $0.joinedAt >= seq }
            if reply.status || joinedAfter { acknowledged(seq, by: replica.id, into: &actions) }
        case .resolve(_, commit: false):
            break
        case .connect, .probe:
            guard let stat = reply.stat else { return }
            // An answer proves the connection is up, also for a link that a reload took over already connected.
            observeFence(replica, stat, into: &actions)
            // A fenced master must not move above the seqs the newer one issued: it would fence that one in turn.
            if fencedBy == nil { floorSeqs(replica, stat, into: &actions) }
            if let index = slotIndex(replica) {
                reported.insert(replica)
                let slot = slots[index]
                // A member that reports another join than the one recorded is not the copy the master synced.
                let sameCopy = slot.syncing || slot.joinedAt == 0 || stat.joinedSince == slot.joinedAt
                slots[index].lastJoined = stat.joined && sameCopy
                slots[index].lastKeys = stat.keys
                slots[index].lastInDoubt = !stat.inDoubt.isEmpty
                slots[index].connected = true
                if slots[index].lastJoined == true { witnessed(replica, into: &actions) }
            }
            if call == .connect {
                resolveInDoubt(replica, stat, into: &actions)
                evaluateMembership(into: &actions)
            }
            admitWaiting(into: &actions)
        case .bootstrapReset:
            if reply.status, let index = slotIndex(replica) { slots[index].lastKeys = 0 }
        case .bootstrap(let round):
            guard reply.status, let index = slotIndex(replica) else { return }
            guard round == bootstrapRound else {
                // A join of an earlier round takes nobody in; what the replica is now, its next `stat` says.
                actions.append(.send(replica, .stat, .probe))
                return
            }
            slots[index].lastJoined = true
            slots[index].syncing = false
            slots[index].joinedAt = reply.seq ?? 0
            membershipChanged(into: &actions)
        case .membership:
            // A replica that holds a newer epoch than this master's (a master-state restored from a backup, or
            // lost) ignores its announcements: move above that epoch and announce again.
            guard let inForce = reply.seq, inForce > state.membershipEpoch else { return }
            actions.append(.note(.warning, "\(replica.id) holds membership epoch \(inForce), beyond this master's "
                + "\(state.membershipEpoch) (was master-state restored or lost?): announcing again above it"))
            state.membershipEpoch = inForce
            membershipChanged(into: &actions)
        case .transfer(let target, let attempt, let step):
            guard transfers[target]?.attempt == attempt else { return }
            transferEvent(target, .reply(step, reply), into: &actions)
        }
    }

    mutating func failed(_ replica: ClusterConfig.Replica, _ call: Call, _ reason: String,
                         into actions: inout [Action]) {
        switch call {
        case .txn(let seq):
            replicaFailing(replica, reason, into: &actions)
            drive(seq, .unreachable(replica: replica.id, reason: reason), into: &actions)
        case .transfer(let target, let attempt, let step):
            guard transfers[target]?.attempt == attempt else { return }
            transferEvent(target, .unreachable(step, reason), into: &actions)
        case .deliver, .connect, .probe:
            replicaFailing(replica, "unreachable: \(reason)", into: &actions)
        case .resolve, .bootstrap, .bootstrapReset, .membership:
            break
        }
    }

    /// A new connection starts with `stat` (in-doubt seqs, whether the replica is in sync) and the current
    /// participants (`memb`), before anything else the link had queued.
    mutating func connected(_ replica: ClusterConfig.Replica, into actions: inout [Action]) {
        if let index = slotIndex(replica) { slots[index].connected = true }
        actions.append(.send(replica, .stat, .connect))
        actions.append(.send(replica, membershipRequest, .membership))
    }
}
