import Foundation
import KVCommon
import KVRuntime
import Logging
import NIOCore

/// Finds out the outcome of this replica's in-doubt transactions when nobody tells it.
///
/// Eligible: every transaction recovered from the log at start-up, and any live one older than the
/// coordinator's own time limits (prepare + commit time-outs), so a normal in-flight transaction is never
/// disturbed. For each: ask the master (`seq;qry;;` at `master.query_listen`); if the master cannot answer,
/// ask the peers (cooperative termination): a peer that committed → commit; a peer that aborted or never
/// prepared (it then records an abort, so it will vote no) → abort; otherwise the transaction stays blocked,
/// which `stat` and `/status` show. The outcome is applied by submitting `com`/`abrt` to this replica itself.
final class InDoubtResolver {
    private let node: ReplicaNode
    private let cluster: ClusterConfig
    private let me: ClusterConfig.Replica
    private let group: EventLoopGroup
    private let logger: Logger
    private let interval: TimeInterval = 0.2

    init(node: ReplicaNode, cluster: ClusterConfig, me: ClusterConfig.Replica, group: EventLoopGroup, logger: Logger) {
        self.node = node
        self.cluster = cluster
        self.me = me
        self.group = group
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in
            while true {
                resolveOnce()
                Thread.sleep(forTimeInterval: interval)
            }
        }
        thread.name = "in-doubt-resolver"
        thread.start()
    }

    /// One pass over the eligible in-doubt transactions.
    func resolveOnce() {
        let liveLimitMs = UInt64(cluster.timeouts.prepareTimeoutMs + cluster.timeouts.commitTimeoutMs)
        var stillBlocked: Set<UInt64> = []
        for item in node.inDoubt() where item.recovered || item.ageMs >= liveLimitMs {
            switch outcome(of: item.seq) {
            case .some(.committed):
                logger.notice("in-doubt \(item.seq): learned commit; applying")
                node.submit(.com(item.seq)) { _ in }
            case .some(.aborted):
                logger.notice("in-doubt \(item.seq): learned abort; rolling back")
                node.submit(.abrt(item.seq)) { _ in }
            case nil:
                if !node.isBlocked(item.seq) {
                    logger.warning("in-doubt \(item.seq): master unreachable and no peer knows the outcome; key stays locked (blocked)")
                }
                stillBlocked.insert(item.seq)
            }
        }
        node.setBlocked(stillBlocked)
    }

    private func outcome(of seq: UInt64) -> DecisionMemory.Outcome? {
        if let host = cluster.master.queryHost, let port = cluster.master.queryPort,
           let answer = ask(WireRequest(seq: seq, command: .qry), host: host, port: port, who: "master") {
            return answer
        }
        for peer in cluster.replicas where peer.id != me.id {
            if let answer = ask(WireRequest(seq: seq, command: .qry), host: peer.host, port: peer.port, who: peer.id) {
                return answer
            }
        }
        return nil
    }

    private func ask(_ request: WireRequest, host: String, port: Int, who: String) -> DecisionMemory.Outcome? {
        switch WireCall.call(request, host: host, port: port, timeoutMs: cluster.timeouts.connectTimeoutMs,
                             group: group) {
        case .success(let reply) where reply.status && reply.code == .committed:
            return .committed
        case .success(let reply) where reply.status && reply.code == .aborted:
            return .aborted
        case .success(let reply):
            logger.debug("qry \(request.seq ?? 0) to \(who): \(reply.code.rawValue) (\(reply.message))")
            return nil
        case .failure(let error):
            logger.debug("qry \(request.seq ?? 0) to \(who): \(error)")
            return nil
        }
    }
}
