import Foundation
import KVCommon
import KVRuntime
import Logging
import NIOCore

/// Runs this replica's `InDoubtTermination` (whom to ask about an in-doubt transaction, how the answers
/// combine): every 200 ms it feeds the replica's in-doubt transactions, asks the master (`seq;qry;;` at
/// `master.query_listen`) or a peer as told, and applies an outcome by submitting `com`/`abrt` to the replica
/// itself. What no one could tell stays blocked, which `stat` and `/status` show.
final class InDoubtResolver {
    private let node: ReplicaNode
    private let cluster: ClusterConfig
    private let group: EventLoopGroup
    private let logger: Logger
    private let me: ClusterConfig.Replica
    /// The cluster key (nil: links are not authenticated); this replica asks as role replica.
    private let clusterKey: ClusterKey?
    private let tls: LinkTLS?
    private let interval: TimeInterval = 0.2
    private var termination: InDoubtTermination

    init(node: ReplicaNode, cluster: ClusterConfig, me: ClusterConfig.Replica, group: EventLoopGroup,
         clusterKey: ClusterKey?, tls: LinkTLS?, logger: Logger) {
        self.node = node
        self.tls = tls
        self.me = me
        self.clusterKey = clusterKey
        self.cluster = cluster
        self.group = group
        self.logger = logger
        termination = InDoubtTermination(
            liveLimitMs: UInt64(cluster.timeouts.prepareTimeoutMs + cluster.timeouts.commitTimeoutMs),
            askMaster: cluster.master.queryAddress != nil, me: me.id)
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
        let wasBlocked = termination.blocked
        var actions = termination.handle(.tick(inDoubt: node.inDoubt()))
        while !actions.isEmpty {
            switch actions.removeFirst() {
            case .ask(let target, let seq):
                actions += termination.handle(.answer(seq: seq, from: target, ask(target, seq)))
            case .decide(let seq, let committed):
                logger.notice("in-doubt \(seq): learned \(committed ? "commit; applying" : "abort; rolling back")")
                node.submit(committed ? .com(seq) : .abrt(seq)) { _ in }
            }
        }
        for seq in termination.blocked.subtracting(wasBlocked).sorted() {
            logger.warning("in-doubt \(seq): master unreachable and no peer knows the outcome; key stays locked (blocked)")
        }
        node.setBlocked(termination.blocked)
    }

    private func ask(_ target: InDoubtTermination.Target, _ seq: UInt64) -> WireReply? {
        let host: String, port: Int, who: String
        switch target {
        case .master:
            guard let queryHost = cluster.master.queryHost, let queryPort = cluster.master.queryPort else { return nil }
            (host, port, who) = (queryHost, queryPort, "master")
        case .peer(let member):
            (host, port, who) = (member.host, member.port, member.id)
        }
        let handshake = clusterKey.map {
            LinkAuthClientHandler.initiator(key: $0.key(for: .replica), id: me.id,
                                            expectedServer: who == "master" ? cluster.master.id : who)
        }
        switch WireCall.call(WireRequest(seq: seq, command: .qry), host: host, port: port,
                             timeoutMs: cluster.timeouts.connectTimeoutMs, group: group, handshake: handshake,
                             tls: tls) {
        case .success(let reply):
            logger.debug("qry \(seq) to \(who): \(reply.code.rawValue) (\(reply.message))")
            return reply
        case .failure(let error):
            logger.debug("qry \(seq) to \(who): \(error)")
            return nil
        }
    }
}
