import Foundation
import KVCommon
import Synchronization

/// The master's operations, independent of HTTP: reads from one replica, writes through 2PC, status.
final class KVService: @unchecked Sendable {
    enum ReadResult {
        /// A replica answered (found, not found, or a listing page).
        case answered(WireReply)
        /// No replica could answer; `reasons` says why for each one tried.
        case unavailable(reasons: [String])
    }

    let views: ClusterViews
    let runner: TransactionRunner
    let delivery: CommitDelivery
    let registry: InFlightRegistry
    let seqs: SeqAllocator
    let sync: SyncManager
    let startedAt = Date()
    private let readCounter = Atomic<UInt64>(0)

    init(views: ClusterViews, runner: TransactionRunner, delivery: CommitDelivery, registry: InFlightRegistry,
         seqs: SeqAllocator, sync: SyncManager) {
        self.views = views
        self.sync = sync
        self.runner = runner
        self.delivery = delivery
        self.registry = registry
        self.seqs = seqs
    }

    /// Asks a random in-sync replica that is up (`get` or `list`), trying the others if it fails. "Not found"
    /// is an answer; a key still locked by an undecided transaction after the wait is not (503).
    func read(_ request: WireRequest, in view: ClusterView) -> ReadResult {
        let readable = view.readableLinks
        let count = readable.count
        // Spread reads over the replicas by rotating the starting point (cheaper than shuffling with the
        // system's random source on every read); connected replicas first, in that order. Walked in place: no
        // array is built per read.
        let start = count == 0 ? 0 : Int(readCounter.add(1, ordering: .relaxed).oldValue % UInt64(count))
        var reasons: [String] = []
        for pass in 0..<2 {
            let connectedPass = pass == 0
            for offset in 0..<count {
                let link = readable[(start + offset) % count]
                guard link.health.connected == connectedPass else { continue }
                switch view.pool.read(link, request, timeoutMs: view.config.timeouts.readTimeoutMs) {
                case .success(let reply) where reply.status || reply.code == .notFound:
                    return .answered(reply)
                case .success(let reply):
                    reasons.append("\(link.replica.id): \(reply.message)")
                    if reply.code == .timeout { return .unavailable(reasons: reasons) }
                case .failure(let failure):
                    reasons.append("\(link.replica.id): \(failure.reason)")
                }
            }
        }
        return .unavailable(reasons: reasons)
    }

    /// Runs `op` as a two-phase-commit transaction on every in-sync replica of the configuration in force.
    func write(_ write: WriteRequest) -> Coordinator.Outcome? {
        runner.run(write, views: views)
    }

    /// Asks every replica for `stat` in parallel.
    func replicaStatus(in view: ClusterView) -> [(ReplicaLink, Result<WireReply, LinkFailure>)] {
        view.pool.callAll(.stat, timeoutMs: view.config.timeouts.readTimeoutMs)
    }
}
