// Membership: which configured replicas take part, state transfers for the ones that do not, reloads, and the
// bootstrap of a brand-new cluster.
//
// A configured replica is a participant (gets every prepare, may serve reads) unless it is syncing. It is
// syncing when a reload adds it or changes it, or when it reports `joined: false` (its data is new or wiped);
// a state transfer from a participant brings it back. A new cluster, where every replica reports
// `joined: false`, is bootstrapped: all are empty and identical, so each is told to join.

/// Which replicas take part now; published to the executor, which routes reads by it.
public struct MembershipView: Equatable, Sendable {
    public var configEpoch: UInt64
    /// The configured replicas, in configuration order.
    public var replicas: [ClusterConfig.Replica]
    /// Configured replicas being synced: they neither vote nor serve reads.
    public var syncing: Set<String>
    /// Replicas that reloads removed (and that were not added back), for `/status`.
    public var removed: [ClusterConfig.Replica]

    /// The replicas every write goes to and reads may use, in configuration order.
    public var participants: [ClusterConfig.Replica] { replicas.filter { !syncing.contains($0.id) } }
}

extension TransactionManager {
    /// `memb` with the participants now: every prepare a replica records after it names them.
    var membershipRequest: WireRequest {
        WireRequest(seq: max(1, state.membershipEpoch), command: .memb,
                    value: Member.encode(participantReplicas.map { Member($0) }))
    }

    /// The seq a replica joins at: every seq issued so far is at or below it.
    var joinSeq: UInt64 { lastIssued }

    /// The in-sync replicas, as the state file keeps them.
    var members: [MasterState.Member] {
        slots.filter { !$0.syncing }.map { MasterState.Member(replica: $0.replica, joinedAt: $0.joinedAt) }
    }

    /// The participants changed: a new membership epoch, persisted before it is announced to each of them
    /// (before any prepare that follows on its link) and published, so a restart never counts in sync a replica
    /// that was not.
    mutating func membershipChanged(into actions: inout [Action]) {
        state.membershipEpoch += 1
        state.members = members
        actions.append(.persist(state))
        let request = membershipRequest
        for replica in participantReplicas { actions.append(.send(replica, request, .membership)) }
        actions.append(.publish(view))
        // A transfer copying from a replica that no longer takes part (out of sync, removed, moved) would copy a
        // state that misses the writes from now on, and could join its target with it.
        let participants = Set(participantReplicas)
        for target in transfers.keys.sorted() {
            guard transfers[target]?.current != nil, let source = transfers[target]?.source,
                  !participants.contains(source) else { continue }
            transferEvent(target, .unreachable(.stat(.source), "the source \(source.id) no longer takes part"),
                          into: &actions)
        }
    }

    public var view: MembershipView {
        MembershipView(configEpoch: state.configEpoch, replicas: slots.map(\.replica),
                       syncing: Set(slots.filter(\.syncing).map(\.replica.id)), removed: removed)
    }

    /// Every probe interval: reconnect to replicas that are not connected (their first answer says whether they
    /// came back with their data or empty), then see who needs a state transfer.
    mutating func probe(into actions: inout [Action]) {
        for slot in slots where !slot.connected { actions.append(.send(slot.replica, .stat, .probe)) }
        evaluateMembership(into: &actions)
        actions.append(.startTimer(.probe, ms: settings.probeIntervalMs))
    }

    mutating func evaluateMembership(into actions: inout [Action]) {
        let states = slots.map(\.lastJoined)
        if !states.isEmpty, states.allSatisfy({ $0 == false }) {
            // Only a cluster that never held data is bootstrapped: if a replica the membership counts in sync once
            // joined, every copy of the committed writes is gone or out of reach, and an empty start would lose them.
            if let member = slots.first(where: { !$0.syncing && $0.joinedAt > 0 }) {
                actions.append(.note(.warning, "every replica reports being out of sync, but \(member.replica.id) "
                    + "was in sync since seq \(member.joinedAt): not bootstrapping an empty cluster over committed "
                    + "writes; bring that replica back (see docs/OPERATIONS.md)"))
                return
            }
            // No replica is in sync and none has been: no transfer under way can find a source.
            for id in transfers.keys.sorted() { abandonTransfer(id, into: &actions) }
            // Empty replicas are identical, so each may join; one a transfer left half filled is emptied first,
            // and in-doubt prepares are resolved first (a reset refuses them).
            let filled = slots.filter { ($0.lastKeys ?? 1) > 0 || $0.lastInDoubt }
            for slot in filled where !slot.lastInDoubt && slot.lastKeys != nil {
                actions.append(.send(slot.replica, WireRequest(seq: nil, command: .reset), .bootstrapReset))
                actions.append(.send(slot.replica, .stat, .probe))
            }
            guard filled.isEmpty else { return }
            actions.append(.note(.notice, "every replica is new and empty: bootstrapping the cluster (all join)"))
            // Each replica takes part from its own acknowledged join on: one whose answer is lost may have joined
            // or not, so it is synced like any other rather than counted as a copy.
            if slots.contains(where: { !$0.syncing }) {
                for index in slots.indices { slots[index].syncing = true }
                membershipChanged(into: &actions)
            }
            bootstrapRound += 1
            let join = WireRequest(seq: joinSeq, command: .join)
            for slot in slots { actions.append(.send(slot.replica, join, .bootstrap(bootstrapRound))) }
            return
        }
        // A replica out of sync can only copy from one in sync; with none known yet, wait.
        guard states.contains(where: { $0 == true }) else { return }
        for slot in slots where slot.lastJoined == false || slot.syncing { ensureTransfer(slot.replica.id, into: &actions) }
    }

    /// Starts a state transfer for `replica` unless one is under way (or waiting to retry).
    mutating func ensureTransfer(_ replica: String, into actions: inout [Action]) {
        guard transfers[replica] == nil, let index = slots.firstIndex(where: { $0.replica.id == replica }) else { return }
        if !slots[index].syncing {
            bootstrapRound += 1
            slots[index].syncing = true
            actions.append(.note(.notice, "\(replica) is out of sync: writes and reads go to the other replicas "
                + "until it is synced"))
            membershipChanged(into: &actions)
        }
        transfers[replica] = Transfer(replica: slots[index].replica)
        startAttempt(replica, into: &actions)
    }

    /// Drops the transfer of `replica` (a reload changed its address or disk, or removed it): replies of its
    /// attempt are ignored from now on, and writes it held back go on.
    mutating func abandonTransfer(_ replica: String, into actions: inout [Action]) {
        guard transfers.removeValue(forKey: replica) != nil else { return }
        actions.append(.cancelTimer(.transferStep(replica)))
        actions.append(.cancelTimer(.transferRetry(replica)))
        if let index = pauseQueue.firstIndex(of: .transfer(replica)) {
            pauseQueue.remove(at: index)
            actions.append(.cancelTimer(.pause(.transfer(replica))))
        }
        if pausedBy == .transfer(replica) { releasePause(into: &actions) }
    }

    mutating func startAttempt(_ replica: String, into actions: inout [Action]) {
        guard var transfer = transfers[replica] else { return }
        guard let slot = slots.first(where: { $0.replica.id == replica }) else {
            transfers[replica] = nil  // no longer configured
            return
        }
        transferAttempts += 1
        transfer.attempt = transferAttempts
        transfer.dirty = []
        guard let source = slots.first(where: { $0.replica.id != replica && !$0.syncing && $0.connected
            && $0.lastJoined == true && transfer.sources?.contains($0.replica.id) != false })?.replica
        else {
            transfer.progress = StateTransfer.Progress(phase: "retrying", loaded: 0, total: 0, attempt: transfer.attempt,
                                                       error: "no healthy replica to copy from")
            transfers[replica] = transfer
            scheduleRetry(replica, into: &actions)
            return
        }
        transfer.replica = slot.replica
        transfer.source = source
        transfer.current = StateTransfer(source: source.id, attempt: transfer.attempt,
                                         readTimeoutMs: settings.timeouts.readTimeoutMs)
        transfers[replica] = transfer
        transferEvent(replica, .begin, into: &actions)
    }

    private mutating func scheduleRetry(_ replica: String, into actions: inout [Action]) {
        let attempt = transfers[replica]?.attempt ?? 1
        actions.append(.startTimer(.transferRetry(replica), ms: min(5000, 200 * attempt)))
    }

    /// Feeds the transfer of `replica` and executes its actions.
    mutating func transferEvent(_ replica: String, _ event: StateTransfer.Event, into actions: inout [Action]) {
        guard var transfer = transfers[replica], transfer.current != nil, let source = transfer.source else { return }
        let steps = transfer.current!.handle(event)
        transfers[replica] = transfer
        for step in steps {
            switch step {
            case .send(let role, let request, let kind):
                let to = role == .target ? transfer.replica : source
                actions.append(.send(to, request, .transfer(replica, attempt: transfer.attempt, kind)))
            case .deadline(let ms):
                actions.append(.startTimer(.transferStep(replica), ms: ms))
            case .pause:
                let timeouts = settings.timeouts
                requestPause(.transfer(replica), timeoutMs: timeouts.prepareTimeoutMs + timeouts.commitTimeoutMs,
                             into: &actions)
            case .joined:
                transferJoined(replica, into: &actions)
            case .failed(let reason):
                transferFailed(replica, reason, into: &actions)
            }
        }
        // A catch-up round asks for the keys committed meanwhile.
        if transfers[replica]?.current?.wantsDirtyKeys == true {
            transferEvent(replica, .caughtUp(dirty: takeDirty(replica)), into: &actions)
        }
    }

    private mutating func takeDirty(_ replica: String) -> [[UInt8]] {
        let keys = transfers[replica]?.dirty ?? []
        transfers[replica]?.dirty = []
        return keys.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Writes are paused for the transfer's final step.
    mutating func transferPaused(_ replica: String, into actions: inout [Action]) {
        let seq = joinSeq
        transfers[replica]?.joinedAt = seq
        transferEvent(replica, .paused(dirty: takeDirty(replica), joinAt: seq), into: &actions)
    }

    private mutating func transferJoined(_ replica: String, into actions: inout [Action]) {
        guard let transfer = transfers.removeValue(forKey: replica) else { return }
        actions.append(.cancelTimer(.transferStep(replica)))
        guard let index = slots.firstIndex(where: { $0.replica == transfer.replica }) else { return }
        slots[index].syncing = false
        slots[index].lastJoined = true
        slots[index].joinedAt = transfer.joinedAt
        let copied = transfer.current?.progress.total ?? 0
        actions.append(.note(.notice, "\(replica) is in sync (\(copied) keys copied) and takes part again"))
        ejectedReplicaRejoined(replica, into: &actions)
        membershipChanged(into: &actions)
        replicaSynced(replica, into: &actions)
        if pausedBy == .transfer(replica) { releasePause(into: &actions) }
    }

    private mutating func transferFailed(_ replica: String, _ reason: String, into actions: inout [Action]) {
        guard var transfer = transfers[replica] else { return }
        transfer.progress = transfer.current?.progress
        transfer.current = nil
        transfer.dirty = []
        transfers[replica] = transfer
        actions.append(.cancelTimer(.transferStep(replica)))
        actions.append(.note(.warning, "sync of \(replica) failed (attempt \(transfer.attempt)): \(reason); retrying"))
        if let index = pauseQueue.firstIndex(of: .transfer(replica)) {
            pauseQueue.remove(at: index)
            actions.append(.cancelTimer(.pause(.transfer(replica))))
        }
        if pausedBy == .transfer(replica) { releasePause(into: &actions) }
        scheduleRetry(replica, into: &actions)
    }

    // MARK: - Reload

    /// A new configuration: the configuration epoch is persisted first, then writes of the old one are let
    /// finish (bounded) and the new replica set takes over.
    mutating func reload(_ new: Settings, _ id: ReloadID, notes: [String], into actions: inout [Action]) {
        if let refusal = keepsNoParticipant(new) {
            actions.append(.answerReload(id, ok: false, message: refusal))
            return
        }
        state.configEpoch += 1
        actions.append(.persist(state))
        pendingReloads[id] = (new, notes)
        let timeouts = settings.timeouts
        requestPause(.reload(id), timeoutMs: timeouts.prepareTimeoutMs + timeouts.commitTimeoutMs, into: &actions)
    }

    /// Why `new` cannot take over: it keeps none of the replicas in sync now (each is removed, moved or given
    /// another disk), so nothing would hold the committed writes to copy from. Nil when it can.
    private func keepsNoParticipant(_ new: Settings) -> String? {
        let participants = slots.filter { !$0.syncing }.map(\.replica)
        guard !participants.isEmpty, !participants.contains(where: new.replicas.contains) else { return nil }
        return "reload rejected, the old configuration stays in force: it keeps none of the replicas in sync now "
            + "(\(participants.map { "\($0.id)@\($0.address)" }.joined(separator: ", "))), so nothing would hold the "
            + "committed writes; keep at least one of them as it is"
    }

    mutating func switchConfiguration(_ id: ReloadID, into actions: inout [Action]) {
        guard let (new, notes) = pendingReloads.removeValue(forKey: id) else { return }
        if let refusal = keepsNoParticipant(new) {
            // The in-sync set changed while writes drained.
            actions.append(.answerReload(id, ok: false, message: refusal))
            if pausedBy == .reload(id) { releasePause(into: &actions) }
            return
        }
        let old = settings
        // A replica that is new to the configuration (or changed) may be empty or stale: sync it before it takes
        // part. Replicas that were syncing stay syncing.
        let added = new.replicas.filter { replica in old.replica(replica.id) != replica }.map(\.id)
        let previous = slots
        slots = new.replicas.map { replica in
            if let slot = previous.first(where: { $0.replica == replica }) { return slot }
            return Slot(replica: replica, syncing: added.contains(replica.id) || previous.contains {
                $0.replica.id == replica.id && $0.syncing
            })
        }
        // A transfer to a replica the new configuration changed or removed is abandoned; a changed one starts over.
        for id in transfers.keys.sorted() where new.replicas.first(where: { $0.id == id }) != transfers[id]?.replica {
            abandonTransfer(id, into: &actions)
        }
        let gone = old.replicas.filter { new.replica($0.id) == nil }
        removed = removed.filter { new.replica($0.id) == nil && !gone.contains($0) } + gone
        let dropped = old.replicas.filter { !new.replicas.contains($0) }
        settings = new
        if !dropped.isEmpty {
            // Transactions that started under the old configuration may still use these links; close them later.
            closing[id] = dropped
            let timeouts = old.timeouts
            actions.append(.startTimer(.closeLinks(id), ms: timeouts.prepareTimeoutMs + timeouts.commitTimeoutMs))
        }
        membershipChanged(into: &actions)
        for slot in slots where !slot.connected { actions.append(.send(slot.replica, .stat, .probe)) }
        let names = new.replicas.map { "\($0.id)@\($0.address)" }.joined(separator: ", ")
        var message = "configuration epoch \(state.configEpoch) in force: replicas \(names)"
        if !notes.isEmpty { message += "; " + notes.joined(separator: "; ") }
        if !added.isEmpty { message += "; syncing \(added.joined(separator: ", ")) before they take part" }
        actions.append(.note(.notice, "reloaded: \(message)"))
        actions.append(.answerReload(id, ok: true, message: message))
        if pausedBy == .reload(id) { releasePause(into: &actions) }
        for replica in added { ensureTransfer(replica, into: &actions) }
        resumeParkedDeliveries(into: &actions)
    }
}
