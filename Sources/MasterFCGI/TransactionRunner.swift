import Foundation
import KVCommon
import KVRuntime

/// Admits one write (write gate, in-flight limit), picks the configuration in force and hands the transaction
/// to a `TransactionDriver`, which runs the `Coordinator` on an event loop while this worker thread waits.
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
        guard let first = participants.first, let loop = pool.link(first)?.eventLoop else { return nil }
        let seq = seqs.next()
        let driver = TransactionDriver(seq: seq, write: write, pool: pool, participants: participants,
                                       timeouts: timeouts, loop: loop,
                                       context: .init(decisions: decisions, registry: registry, delivery: delivery,
                                                      dirty: dirty))
        guard registry.register(seq, post: driver.post) else { return nil }
        defer { registry.remove(seq) }
        return driver.run()
    }
}
