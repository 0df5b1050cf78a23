import Foundation
import KVCommon
import KVRuntime

/// Runs one write through the `Coordinator` state machine on the calling worker thread: executes its
/// actions (sends over the replica links, persists to the decision log) and feeds it the replies, with a
/// deadline per phase.
struct TransactionRunner {
    let decisions: DecisionLog
    let registry: InFlightRegistry
    let delivery: CommitDelivery
    let seqs: SeqAllocator
    let gate: WriteGate
    let dirty: DirtyKeys

    /// Runs `op` on the participants of the configuration in force once the write gate lets it in; nil when
    /// too many transactions are in flight or a membership change held writes back for too long.
    ///
    /// The view is read after entering the gate, never before: a write that waited while a replica joined (or
    /// a reload switched epochs) must run on the new replica set, or the joined replica would miss it.
    func run(_ write: WriteRequest, views: ClusterViews) -> Coordinator.Outcome? {
        guard gate.enter(timeoutMs: views.current.config.timeouts.prepareTimeoutMs) else { return nil }
        defer { gate.leave() }
        let view = views.current
        return run(write, pool: view.pool, participants: view.participants, timeouts: view.config.timeouts)
    }

    private func run(_ write: WriteRequest, pool: ReplicaPool, participants: [String],
                     timeouts: ClusterConfig.Timeouts) -> Coordinator.Outcome? {
        guard !participants.isEmpty else { return nil }
        let seq = seqs.next()
        let mailbox = Mailbox<Coordinator.Event>()
        guard registry.register(seq, mailbox) else { return nil }
        defer { registry.remove(seq) }
        var coordinator = Coordinator(seq: seq, prepare: write.prepare(seq: seq), participants: participants)
        var local: [Coordinator.Event] = [.start]
        var phase = coordinator.phase
        var deadline = Date(timeIntervalSinceNow: Double(timeouts.prepareTimeoutMs) / 1000)
        while true {
            let event = local.isEmpty ? (mailbox.take(before: deadline) ?? .timeout) : local.removeFirst()
            for action in coordinator.handle(event) {
                switch action {
                case .send(let replica, let request):
                    send(request, to: replica, pool: pool, mailbox: mailbox)
                case .persist(.commit(let seq, let participants)):
                    Failpoints.hit("master-after-votes")
                    guard registry.beginCommit(seq) else {
                        local.append(.decisionVetoed(reason: "aborted: a replica in doubt was told abort first"))
                        continue
                    }
                    decisions.recordCommit(seq: seq, participants: participants)
                    for key in write.writtenKeys { dirty.record(key) }
                    Failpoints.hit("master-after-commit-fsync")
                    if Failpoints.isArmed("master-mid-commit-send"), let first = participants.first {
                        crashAfterFirstCommit(seq: seq, to: first, pool: pool, timeoutMs: timeouts.commitTimeoutMs)
                    }
                    local.append(.decisionDurable)
                case .persist(.end(let seq)):
                    decisions.recordEnd(seq: seq)
                case .finish(let outcome):
                    if !outcome.pendingCommit.isEmpty { delivery.track(seq: seq, replicas: outcome.pendingCommit) }
                    return outcome
                }
            }
            if coordinator.phase != phase {
                phase = coordinator.phase
                let ms = phase == .committing ? timeouts.commitTimeoutMs : timeouts.prepareTimeoutMs
                deadline = Date(timeIntervalSinceNow: Double(ms) / 1000)
            }
        }
    }

    /// Failpoint "master-mid-commit-send": deliver `com` to the first participant only, then crash, leaving
    /// the others in doubt with a durable COMMIT record on the master.
    private func crashAfterFirstCommit(seq: UInt64, to replica: String, pool: ReplicaPool, timeoutMs: Int) {
        guard let link = pool.link(replica) else { return }
        _ = pool.call(link, .com(seq), timeoutMs: timeoutMs)
        Failpoints.hit("master-mid-commit-send")
    }

    private func send(_ request: WireRequest, to replica: String, pool: ReplicaPool,
                      mailbox: Mailbox<Coordinator.Event>) {
        guard let link = pool.link(replica) else {
            mailbox.post(.unreachable(replica: replica, reason: "replica \(replica) is not configured"))
            return
        }
        link.send(request) { result in
            switch result {
            case .success(let reply): mailbox.post(.reply(replica: replica, reply))
            case .failure(let failure): mailbox.post(.unreachable(replica: replica, reason: failure.reason))
            }
        }
    }
}
