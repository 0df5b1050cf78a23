import Foundation
import KVCommon

/// The master's operations, independent of HTTP: reads from one replica, writes through 2PC, status.
final class KVService: @unchecked Sendable {
    enum ReadResult {
        case found(value: [UInt8], seq: UInt64?, server: String)
        case notFound(server: String)
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

    init(views: ClusterViews, runner: TransactionRunner, delivery: CommitDelivery, registry: InFlightRegistry,
         seqs: SeqAllocator, sync: SyncManager) {
        self.views = views
        self.sync = sync
        self.runner = runner
        self.delivery = delivery
        self.registry = registry
        self.seqs = seqs
    }

    /// Reads `key` from a random replica that is up, trying the others if it fails.
    func read(_ key: [UInt8], in view: ClusterView) -> ReadResult {
        let pool = view.pool
        let config = view.config
        let links = view.readableLinks.shuffled().sorted { lhs, rhs in lhs.health.connected && !rhs.health.connected }
        var reasons: [String] = []
        for link in links {
            switch pool.call(link, .get(key), timeoutMs: config.timeouts.readTimeoutMs) {
            case .success(let reply) where reply.status:
                return .found(value: reply.value ?? [], seq: reply.seq, server: reply.server)
            case .success(let reply) where reply.code == .notFound:
                return .notFound(server: reply.server)
            case .success(let reply):
                reasons.append("\(link.replica.id): \(reply.message)")
                if reply.code == .timeout { return .unavailable(reasons: reasons) }
            case .failure(let failure):
                reasons.append("\(link.replica.id): \(failure.reason)")
            }
        }
        return .unavailable(reasons: reasons)
    }

    /// Runs `op` as a two-phase-commit transaction on every in-sync replica of the configuration in force.
    func write(_ op: WriteOp) -> Coordinator.Outcome? {
        runner.run(op, views: views)
    }

    /// Asks every replica for `stat` in parallel.
    func replicaStatus(in view: ClusterView) -> [(ReplicaLink, Result<WireReply, LinkFailure>)] {
        view.pool.callAll(.stat, timeoutMs: view.config.timeouts.readTimeoutMs)
    }
}
