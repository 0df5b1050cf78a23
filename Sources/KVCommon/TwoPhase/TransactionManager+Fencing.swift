// Fencing, the master's side (the replica's is `MasterFence`): every link's handshake states this master's id and
// seq epoch, and a replica takes 2PC commands only from the newest master it has seen.
//
// - The master that started last runs. While starting (until every in-sync replica has reported once), a master
//   that finds another master's fence at or beyond its own epoch moves its epoch above it (persisted first) and
//   opens its links again under the new epoch: the other master is then fenced.
// - A master that finds itself fenced after that (a fence ahead in a `stat`, or a `fenced` refusal) took part
//   in a take-over as the old master: it issues no more seqs and refuses every write, until it is restarted. It
//   never moves its epoch on its own then, so two masters never take the cluster from each other in turn.
// - Whenever the seq epoch moves, every link is closed and opened again, since a link's epoch is the one its
//   handshake proved (the IO layer reads `seqEpoch` when it connects).

extension TransactionManager {
    /// Whether `stat`'s fence names another master at this master's epoch or a newer one.
    func fenceAhead(_ stat: ReplicaStat) -> Bool {
        stat.fenceEpoch > state.seqEpoch
            || (stat.fenceEpoch == state.seqEpoch && !stat.fenceMaster.isEmpty && stat.fenceMaster != linkIdentity)
    }

    /// A replica's `stat`: take over while starting, or be fenced.
    mutating func observeFence(_ replica: ClusterConfig.Replica, _ stat: ReplicaStat, into actions: inout [Action]) {
        guard fenceAhead(stat) else { return }
        foundFence(epoch: stat.fenceEpoch, master: stat.fenceMaster, on: replica, into: &actions)
    }

    /// A `fenced` refusal (its seq is the epoch in force there); one from a link of an epoch left behind is stale.
    mutating func observeRefusal(_ replica: ClusterConfig.Replica, _ reply: WireReply, into actions: inout [Action]) {
        guard reply.code == .fenced, let epoch = reply.seq, epoch >= state.seqEpoch else { return }
        foundFence(epoch: epoch, master: nil, on: replica, into: &actions)
    }

    private mutating func foundFence(epoch: UInt64, master: String?, on replica: ClusterConfig.Replica,
                                     into actions: inout [Action]) {
        let who = master.map { "master \($0)" } ?? "another master"
        if starting {
            guard epoch < UInt64.max / Self.seqsPerEpoch - 2 else {
                actions.append(.note(.warning, "\(replica.id) holds a fence at seq epoch \(epoch), beyond any seq: ignored"))
                return
            }
            actions.append(.note(.warning, "\(replica.id) takes transactions from \(who) at seq epoch \(epoch): this "
                + "master, starting later, takes over at seq epoch \(epoch + 1) and the other is locked out"))
            state.seqEpoch = epoch + 1
            // Seqs below the new epoch were issued by the other master or before: not this log's to presume aborted.
            state.presumeAbortFrom = state.seqEpoch * Self.seqsPerEpoch
            counter = 0
            actions.append(.persist(state))
            reopenLinks(into: &actions)
            return
        }
        guard fencedBy == nil else { return }
        let reason = "this master is fenced: \(who) took over at seq epoch \(epoch) (reported by \(replica.id)); it "
            + "takes no more writes. Only one master may run: stop this one, or restart it to take over again"
        fencedBy = reason
        actions.append(.note(.warning, reason))
        let waiting = admissions
        admissions.removeAll()
        for (id, _) in waiting {
            actions.append(.cancelTimer(.admission(id)))
            actions.append(.answerWrite(id, .refused(reason)))
        }
    }

    /// The seq epoch moved: every link reconnects so that its handshake states the new one.
    mutating func reopenLinks(into actions: inout [Action]) {
        for slot in slots {
            actions.append(.closeLink(slot.replica))
            actions.append(.send(slot.replica, .stat, .probe))
        }
    }
}
