// Writes: admission (write gate, in-flight limit, seqs), one `Coordinator` per transaction, the COMMIT decision
// and its veto, the client's answer (early, once the decision is durable), pauses.

extension TransactionManager {
    mutating func write(_ id: WriteID, _ intent: WriteIntent, into actions: inout [Action]) {
        if let fencedBy {
            actions.append(.answerWrite(id, .refused(fencedBy)))
            return
        }
        guard pausedBy == nil, pauseQueue.isEmpty, admissionOpen else {
            admissions.append((id, intent))
            actions.append(.startTimer(.admission(id), ms: settings.timeouts.prepareTimeoutMs))
            return
        }
        admit(id, intent, into: &actions)
    }

    private mutating func admit(_ id: WriteID, _ intent: WriteIntent, into actions: inout [Action]) {
        let participants = participantReplicas
        guard !participants.isEmpty else {
            actions.append(.answerWrite(id, .refused("no replica is in sync to take writes")))
            return
        }
        guard running.count < settings.inFlightMax else {
            actions.append(.answerWrite(id, .refused("too many transactions in flight (limit \(settings.inFlightMax))")))
            return
        }
        let seq = nextSeq(into: &actions)
        var prepare = intent.prepare
        prepare.seq = seq
        let coordinator = Coordinator(seq: seq, prepare: prepare, participants: participantIDs)
        actions.append(.startTimer(.phase(seq), ms: settings.timeouts.prepareTimeoutMs))
        advance(Running(coordinator: coordinator, writeID: id, intent: intent, participants: participants,
                        ejected: ejectedIDs, phase: coordinator.phase), .start, into: &actions)
    }

    mutating func admissionTimedOut(_ id: WriteID, into actions: inout [Action]) {
        guard let index = admissions.firstIndex(where: { $0.id == id }) else { return }
        admissions.remove(at: index)
        if let silent = slots.first(where: { !$0.syncing && !reported.contains($0.replica) }) {
            actions.append(.answerWrite(id, .refused("writes wait until every in-sync replica has reported the seqs "
                + "it holds, and \(silent.replica.id) has not answered since the master started")))
        } else {
            actions.append(.answerWrite(id, .refused("writes were held back too long (a replica is joining or the "
                + "configuration is changing)")))
        }
    }

    /// The last seq issued (or the epoch's base before the first).
    var lastIssued: UInt64 { state.seqEpoch * Self.seqsPerEpoch + counter }

    /// Seqs are unique only if the epoch is above every seq a replica holds: one it reports at or beyond the
    /// last issued here (the decision log was lost or rewound, or another master shares a copy of it) moves the
    /// epoch above it, persisted first. Seqs below the new epoch are then not this log's to presume aborted.
    mutating func floorSeqs(_ replica: ClusterConfig.Replica, _ stat: ReplicaStat, into actions: inout [Action]) {
        let highest = max(stat.maxSeq, stat.lastCommittedSeq, stat.inDoubt.map(\.seq).max() ?? 0)
        guard highest > lastIssued else { return }
        guard highest < UInt64.max - 2 * Self.seqsPerEpoch else {
            actions.append(.note(.warning, "\(replica.id) reports seq \(highest), beyond any epoch: ignored"))
            return
        }
        let epoch = highest / Self.seqsPerEpoch + 1
        actions.append(.note(.warning, "\(replica.id) holds seq \(highest), at or beyond this master's last seq "
            + "\(lastIssued): the decision log was lost or rewound, or another master ran on a copy of it; moving to "
            + "seq epoch \(epoch)"))
        state.seqEpoch = epoch
        state.presumeAbortFrom = epoch * Self.seqsPerEpoch
        counter = 0
        actions.append(.persist(state))
        reopenLinks(into: &actions)
    }

    /// The next seq; a new epoch (persisted first) when the counter runs out.
    mutating func nextSeq(into actions: inout [Action]) -> UInt64 {
        let previous = lastIssued
        counter += 1
        if counter == Self.seqsPerEpoch {
            state.seqEpoch += 1
            counter = 1
            actions.append(.persist(state))
            reopenLinks(into: &actions)
        }
        let seq = lastIssued
        precondition(seq > previous, "seqs only grow: \(seq) issued after \(previous)")
        return seq
    }

    /// Feeds `event` to the coordinator of `seq` and executes what it asks for.
    mutating func drive(_ seq: UInt64, _ event: Coordinator.Event, into actions: inout [Action]) {
        // Taken out of `running` while it is driven and put back after: moves, where reading it in place would
        // copy it (retaining every array and string in it) several times per write.
        guard let transaction = running.removeValue(forKey: seq) else { return }
        advance(transaction, event, into: &actions)
    }

    private mutating func advance(_ transaction: consuming Running, _ event: Coordinator.Event,
                                  into actions: inout [Action]) {
        let seq = transaction.coordinator.seq
        var steps = transaction.coordinator.handle(event)
        var next = 0
        while next < steps.count {
            let step = steps[next]
            next += 1
            switch step {
            case .send(let id, let request):
                precondition(request.command != .com || journal.pending[seq] != nil,
                             "com for \(seq) before its COMMIT record is durable")
                guard let replica = transaction.participants.first(where: { $0.id == id }) else { continue }
                actions.append(.send(replica, request, .txn(seq)))
            case .persist(.commit(_, let participants, _, _)):
                // Every vote was yes: log the COMMIT, unless an in-doubt replica was already promised "abort".
                guard transaction.registration == .running else {
                    let vetoed = transaction.coordinator.handle(
                        .decisionVetoed(reason: "aborted: a replica in doubt was told abort first"))
                    steps.insert(contentsOf: vetoed, at: next)
                    continue
                }
                transaction.registration = .committing
                let logged = journal.commit(seq: seq, participants: participants, changes: transaction.changes)
                transaction.index = logged.index
                actions += logged.actions.map(Action.log)
            case .persist(.end):
                actions += journal.end(seq: seq).map(Action.log)
            case .persist(.history), .persist(.horizon):
                preconditionFailure("a coordinator persists only COMMIT and END")
            case .finish(let outcome):
                finish(consume transaction, outcome, into: &actions)
                return
            }
        }
        if !transaction.answered, let early = transaction.coordinator.committedOutcome {
            // The COMMIT is durable and `com` is on its way: every replica holds the write prepared, and a read
            // that reaches one before its `com` waits for it (the key is locked), so this stays linearizable.
            transaction.answered = true
            var answer = early
            answer.index = transaction.index
            answer.ejected = transaction.ejected
            actions.append(.answerWrite(transaction.writeID, .outcome(answer)))
        }
        let phase = transaction.coordinator.phase
        if phase != transaction.phase {
            transaction.phase = phase
            let timeouts = settings.timeouts
            actions.append(.startTimer(.phase(seq), ms: phase == .committing ? timeouts.commitTimeoutMs
                                                                           : timeouts.prepareTimeoutMs))
        }
        running[seq] = transaction
        grantPauseIfDrained(into: &actions)
    }

    /// The COMMIT of `seq` is durable. Its transaction goes on (`com`, the client's answer) once its index is
    /// published, so that a client never learns an index watchers have not seen yet; appends become durable in
    /// order, so this waits only when durability is reported out of order.
    mutating func commitDurable(_ seq: UInt64, into actions: inout [Action]) {
        let published = journal.commitDurable(seq: seq)
        if !transfers.isEmpty, let keys = running[seq]?.intent.writtenKeys {
            for id in transfers.keys where transfers[id]?.current != nil { transfers[id]!.dirty.formUnion(keys) }
        }
        for entry in published { actions.append(.changed(entry.index, entry.changes)) }
        for entry in published { drive(entry.seq, .decisionDurable, into: &actions) }
    }

    /// `transaction` is over (it is no longer in `running`).
    private mutating func finish(_ transaction: consuming Running, _ outcome: Coordinator.Outcome, into actions: inout [Action]) {
        let seq = transaction.coordinator.seq
        actions.append(.cancelTimer(.phase(seq)))
        if !outcome.pendingCommit.isEmpty { track(seq, outcome.pendingCommit, into: &actions) }
        if !transaction.answered {
            var answer = outcome
            if outcome.committed { answer.index = transaction.index }
            answer.ejected = transaction.ejected
            actions.append(.answerWrite(transaction.writeID, .outcome(answer)))
        }
        grantPauseIfDrained(into: &actions)
    }

    // MARK: - Pauses (the write gate)

    mutating func requestPause(_ owner: PauseOwner, timeoutMs: Int, into actions: inout [Action]) {
        pauseQueue.append(owner)
        actions.append(.startTimer(.pause(owner), ms: timeoutMs))
        grantPauseIfDrained(into: &actions)
    }

    /// Grants the oldest pause request once no admitted write is unanswered.
    mutating func grantPauseIfDrained(into actions: inout [Action]) {
        guard pausedBy == nil, let owner = pauseQueue.first, running.values.allSatisfy(\.answered) else { return }
        pauseQueue.removeFirst()
        pausedBy = owner
        actions.append(.cancelTimer(.pause(owner)))
        switch owner {
        case .client(let id): actions.append(.paused(id))
        case .reload(let id): switchConfiguration(id, into: &actions)
        case .transfer(let replica): transferPaused(replica, into: &actions)
        }
    }

    mutating func pauseTimedOut(_ owner: PauseOwner, into actions: inout [Action]) {
        guard let index = pauseQueue.firstIndex(of: owner) else { return }
        pauseQueue.remove(at: index)
        switch owner {
        case .client(let id):
            actions.append(.pauseFailed(id, "running writes did not pause in time"))
        case .reload(let id):
            actions.append(.note(.warning, "reload: writes of configuration epoch \(state.configEpoch - 1) still "
                + "running; switching anyway"))
            switchConfiguration(id, into: &actions)
        case .transfer(let replica):
            transferEvent(replica, .unreachable(.join, "running writes did not finish in time for the final step"),
                          into: &actions)
        }
        admitWaiting(into: &actions)
    }

    /// Lets writes go on after a pause.
    mutating func releasePause(into actions: inout [Action]) {
        pausedBy = nil
        grantPauseIfDrained(into: &actions)
        admitWaiting(into: &actions)
    }

    mutating func admitWaiting(into actions: inout [Action]) {
        while pausedBy == nil, pauseQueue.isEmpty, admissionOpen, !admissions.isEmpty {
            let (id, intent) = admissions.removeFirst()
            actions.append(.cancelTimer(.admission(id)))
            admit(id, intent, into: &actions)
        }
    }
}
