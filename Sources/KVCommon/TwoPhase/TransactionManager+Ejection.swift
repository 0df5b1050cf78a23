// Ejection (`availability.eject_after_ms`): a participant that has been unreachable or too slow for that long
// is taken out of the in-sync set, so writes go on with the others instead of answering 503 until an operator
// edits cluster.yaml. The 2PC promise narrows from "every configured replica" to "every in-sync replica, and
// never fewer than `min_in_sync_replicas`".
//
// Safety rests on the membership machinery: ejecting is marking the replica syncing, and `membershipChanged`
// persists the new in-sync set (a new membership epoch) before anything after it, announces it (`memb`) to the
// remaining participants ahead of any prepare on their links, and publishes it (reads follow it). So no write
// commits without the replica before its ejection is durable, a restart never counts it in sync, and a
// replica's in-doubt termination never asks it about a seq issued after. An ejected replica comes back only
// through a state transfer (`reset`, copy, `join`), whether it was dead or only slow.
//
// Damping: a replica ejected again soon after it rejoined waits before its next resync, 1 s doubling up to
// 60 s; once it stays in sync for `calmMs` its count starts over.

extension TransactionManager {
    /// A replica's recent ejections, as `/status` shows them.
    public struct Ejection: Equatable, Sendable {
        public var replica: String
        /// Why it was ejected last.
        public var reason: String
        /// Ejections since it last stayed in sync for `calmMs`.
        public var count: Int
        /// How long its resync waits after this ejection (damping).
        public var holdMs: Int
    }

    /// A rejoined replica that stays in sync this long no longer counts its earlier ejections.
    static let calmMs = 60_000
    static let holdMaxMs = 60_000

    /// Recent ejections, by replica id.
    public var recentEjections: [Ejection] { ejections.keys.sorted().map { ejections[$0]! } }

    /// The in-sync floor in force.
    var minInSync: Int { settings.availability.minInSync(of: settings.replicas.count) }

    /// `replica` failed to answer (or its link broke): start its ejection clock unless it runs already.
    mutating func replicaFailing(_ replica: ClusterConfig.Replica, _ reason: String, into actions: inout [Action]) {
        let ejectAfterMs = settings.availability.ejectAfterMs
        guard ejectAfterMs > 0, participantIDs.contains(replica.id), slotIndex(replica) != nil else { return }
        if failing.updateValue(reason, forKey: replica.id) == nil {
            actions.append(.startTimer(.eject(replica.id), ms: ejectAfterMs))
        }
    }

    /// `replica` answered: its ejection clock stops.
    mutating func replicaAnswered(_ replica: ClusterConfig.Replica, into actions: inout [Action]) {
        guard !failing.isEmpty, failing.removeValue(forKey: replica.id) != nil else { return }
        ejectionsRefused.remove(replica.id)
        witnesses[replica.id] = nil
        actions.append(.cancelTimer(.eject(replica.id)))
    }

    /// The phase of `seq` ran out of time: the participants it still waited for are failing.
    mutating func phaseTimedOut(_ seq: UInt64, into actions: inout [Action]) {
        guard let transaction = running[seq] else { return }
        let phase = transaction.coordinator.phase == .committing ? "acknowledge a commit" : "vote"
        let ms = transaction.coordinator.phase == .committing ? settings.timeouts.commitTimeoutMs
                                                               : settings.timeouts.prepareTimeoutMs
        for id in transaction.coordinator.awaited {
            guard let replica = transaction.participants.first(where: { $0.id == id }) else { continue }
            replicaFailing(replica, "did not \(phase) within \(ms) ms (seq \(seq))", into: &actions)
        }
    }

    /// The `.eject` timer of `id` fired while it is still failing: ask every other participant for `stat` now.
    /// Only those that answer from now on, in sync, count towards the floor (`witnessed`): one that went silent
    /// meanwhile may have lost its disk, and ejecting the last good copy for it would leave nothing in sync. Too few
    /// by the next firing: the floor holds the replica in (said once per outage) and the others are asked again.
    mutating func ejectionDue(_ id: String, into actions: inout [Action]) {
        let ejectAfterMs = settings.availability.ejectAfterMs
        guard let reason = failing[id] else { return }
        guard ejectAfterMs > 0, let index = slots.firstIndex(where: { $0.replica.id == id }), !slots[index].syncing else {
            failing[id] = nil
            witnesses[id] = nil
            return
        }
        if let answered = witnesses[id], answered.count < minInSync, ejectionsRefused.insert(id).inserted {
            actions.append(.note(.warning, "\(id) has been failing for \(ejectAfterMs) ms (\(reason)) but is not "
                + "ejected: only \(answered.count) other in-sync replicas answered since, below min_in_sync_replicas "
                + "\(minInSync); writes answer 503 until it is back"))
        }
        witnesses[id] = []
        for slot in slots where slot.replica.id != id && !slot.syncing {
            actions.append(.send(slot.replica, .stat, .probe))
        }
        actions.append(.startTimer(.eject(id), ms: ejectAfterMs))
    }

    /// `replica` answered a `stat` in sync: a witness for every ejection waiting for answers.
    mutating func witnessed(_ replica: ClusterConfig.Replica, into actions: inout [Action]) {
        guard !witnesses.isEmpty, participantIDs.contains(replica.id), failing[replica.id] == nil else { return }
        for id in witnesses.keys.sorted() where id != replica.id {
            witnesses[id]?.insert(replica.id)
            if let answered = witnesses[id], answered.count >= minInSync { eject(id, into: &actions) }
        }
    }

    private mutating func eject(_ id: String, into actions: inout [Action]) {
        let ejectAfterMs = settings.availability.ejectAfterMs
        guard let reason = failing[id], let index = slots.firstIndex(where: { $0.replica.id == id }),
              !slots[index].syncing else { return }
        failing[id] = nil
        witnesses[id] = nil
        ejectionsRefused.remove(id)
        actions.append(.cancelTimer(.eject(id)))
        var record = ejections[id] ?? Ejection(replica: id, reason: reason, count: 0, holdMs: 0)
        record.count += 1
        record.reason = reason
        record.holdMs = record.count == 1 ? 0 : min(Self.holdMaxMs, 1000 << min(record.count - 2, 6))
        ejections[id] = record
        actions.append(.cancelTimer(.ejectionCalm(id)))
        abandonTransfer(id, into: &actions)
        bootstrapRound += 1
        slots[index].syncing = true
        slots[index].ejected = true
        let others = participantIDs.joined(separator: ", ")
        actions.append(.note(.warning, "ejected \(id) after \(ejectAfterMs) ms failing (\(reason)): writes go on with "
            + "\(others); \(id) is resynced and rejoins once it answers"
            + (record.holdMs > 0 ? " (ejection \(record.count) in a row: resync held off \(record.holdMs) ms)" : "")))
        membershipChanged(into: &actions)
        actions.append(.ejected(record))
        transfers[id] = Transfer(replica: slots[index].replica)
        if record.holdMs > 0 {
            transfers[id]!.progress = StateTransfer.Progress(phase: "held off", loaded: 0, total: 0, attempt: 0,
                                                             error: "ejected \(record.count) times in a row: "
                                                                 + "resync waits \(record.holdMs) ms")
            actions.append(.startTimer(.transferRetry(id), ms: record.holdMs))
        } else {
            startAttempt(id, into: &actions)
        }
        // With it out, every remaining participant may have reported already (a master that started without it).
        admitWaiting(into: &actions)
    }

    /// `id` rejoined after a resync: its ejections stop counting once it stays in sync for `calmMs`.
    mutating func ejectedReplicaRejoined(_ id: String, into actions: inout [Action]) {
        guard let index = slots.firstIndex(where: { $0.replica.id == id }), slots[index].ejected else { return }
        slots[index].ejected = false
        if let record = ejections[id] {
            actions.append(.note(.notice, "\(id) rejoined after its resync (ejected \(record.count) "
                + "time\(record.count == 1 ? "" : "s") in a row)"))
            actions.append(.startTimer(.ejectionCalm(id), ms: Self.calmMs))
        }
    }
}
