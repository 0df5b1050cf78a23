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
    /// The configuration this pass uses; a reload leaves its successor in `reloaded`, taken at the next pass.
    private var cluster: ClusterConfig
    private let reloadLock = NSLock()
    private var reloaded: ClusterConfig?
    /// Called after every pass with the in-doubt and blocked counts (for systemd's STATUS line).
    var onPass: ((_ inDoubt: Int, _ blocked: Int) -> Void)?
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
            liveLimitMs: Self.liveLimitMs(cluster),
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

    /// Takes a reloaded configuration (master query address, peers' addresses, time-outs) from the next pass.
    func apply(_ config: ClusterConfig) {
        reloadLock.lock()
        reloaded = config
        reloadLock.unlock()
    }

    /// One pass over the eligible in-doubt transactions.
    func resolveOnce() {
        reloadLock.lock()
        if let config = reloaded {
            cluster = config
            termination.liveLimitMs = Self.liveLimitMs(config)
            termination.askMaster = config.master.queryAddress != nil
            reloaded = nil
        }
        reloadLock.unlock()
        let wasBlocked = termination.blocked
        let inDoubt = node.inDoubt()
        var actions = termination.handle(.tick(inDoubt: inDoubt))
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
        onPass?(inDoubt.count, termination.blocked.count)
    }

    private static func liveLimitMs(_ config: ClusterConfig) -> UInt64 {
        UInt64(config.timeouts.prepareTimeoutMs + config.timeouts.commitTimeoutMs)
    }

    /// Asks `target` about `seq`. A peer is dialled where the prepare recorded it and, if that fails and
    /// cluster.yaml now names it elsewhere (it moved), there too: its answer is about its own log whichever
    /// address reaches it, so a moved peer is asked as safely as one that stayed.
    private func ask(_ target: InDoubtTermination.Target, _ seq: UInt64) -> WireReply? {
        switch target {
        case .master:
            guard let host = cluster.master.queryHost, let port = cluster.master.queryPort else { return nil }
            return ask(seq, host: host, port: port, who: "master", expected: cluster.master.id)
        case .peer(let member):
            if let reply = ask(seq, host: member.host, port: member.port, who: member.id, expected: member.id) {
                return reply
            }
            guard let now = cluster.replica(id: member.id), now.host != member.host || now.port != member.port
            else { return nil }
            return ask(seq, host: now.host, port: now.port, who: member.id, expected: member.id)
        }
    }

    private func ask(_ seq: UInt64, host: String, port: Int, who: String, expected: String) -> WireReply? {
        let handshake = clusterKey.map {
            LinkAuthClientHandler.initiator(key: $0.key(for: .replica), id: me.id, expectedServer: expected)
        }
        switch WireCall.call(WireRequest(seq: seq, command: .qry), host: host, port: port,
                             timeoutMs: cluster.timeouts.connectTimeoutMs, group: group, handshake: handshake,
                             tls: tls) {
        case .success(let reply):
            logger.debug("qry \(seq) to \(who) at \(host):\(port): \(reply.code.rawValue) (\(reply.message))")
            return reply
        case .failure(let error):
            logger.debug("qry \(seq) to \(who) at \(host):\(port): \(error)")
            return nil
        }
    }
}
