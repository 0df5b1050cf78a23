import KVCommon
import KVRuntime
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The replica's TCP listener: one pipeline per connection, lines in, JSON lines out.
final class ReplicaServer {
    let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    /// Connections held now (for `stat` and the tests of the limit).
    let connections: ConnectionCount
    /// The limits and time-outs a new connection gets; `apply` replaces them.
    private let live: Settings
    /// The longest request line, read at every line by every connection (open ones included).
    private let lineLimit: SharedLimit

    private final class Settings: Sendable {
        let value: Mutex<(limits: ClusterConfig.Limits, timeouts: ClusterConfig.Timeouts)>
        init(_ value: (ClusterConfig.Limits, ClusterConfig.Timeouts)) { self.value = Mutex(value) }
    }

    /// With `clusterKey`, every connection must pass the link handshake (as replica `serverID`) within
    /// `timeouts.handshakeTimeoutMs` before anything it sends is executed, and each command is checked against the
    /// peer's role; without one, the port is open. At most `limits.replicaConnectionsMax` connections are held; a
    /// peer's or operator's connection idle for `timeouts.peerIdleTimeoutMs` is closed. With `tls`, every connection
    /// is mutual TLS first (the handshake time-out covers both).
    init(node: ReplicaNode, host: String, port: Int, limits: ClusterConfig.Limits, timeouts: ClusterConfig.Timeouts,
         threads: Int, clusterKey: ClusterKey?, tls: LinkTLS?, serverID: String, logger: Logger) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let connections = ConnectionCount(limit: limits.replicaConnectionsMax)
        self.connections = connections
        let live = Settings((limits, timeouts))
        self.live = live
        let lineLimit = SharedLimit(limits.wireRequestBytesMax)
        self.lineLimit = lineLimit
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark,
                                value: ChannelOptions.Types.WriteBufferWaterMark(low: 32 << 10, high: 256 << 10))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Read per connection, so a reload's limits and time-outs hold for every connection after it.
                    let (limits, timeouts) = live.value.withLock { ($0.limits, $0.timeouts) }
                    let refusal = WireReply(status: false, code: .busy, message: "too many connections: replica "
                                                + "\(serverID) holds \(limits.replicaConnectionsMax) "
                                                + "(limits.replica_connections_max)", seq: nil, server: serverID).encoded()
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ConnectionLimitHandler(count: connections, refusal: refusal))
                    // Reads only: a write time-out would wrap every reply's write in a promise. A connection paused
                    // for a reader that does not read reads nothing either, so the read time-out finds it too.
                    try sync.addHandler(IdleStateHandler(readTimeout: .milliseconds(Int64(timeouts.peerIdleTimeoutMs))))
                    if let tls { try sync.addHandler(tls.serverHandler()) }
                    try sync.addHandler(ByteToMessageHandler(LineFrameDecoder(limit: lineLimit)))
                    if let clusterKey {
                        let peer = "\(channel.remoteAddress.map { "\($0)" } ?? "?")"
                        let responder = HandshakeResponder(serverID: serverID, clusterKey: clusterKey,
                                                           allowedRoles: [.master, .replica, .operator])
                        try sync.addHandler(LinkAuthServerHandler(responder: responder,
                                                                  timeoutMs: timeouts.handshakeTimeoutMs) {
                            logger.warning("refused a connection from \(peer): \($0)")
                        })
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ReplicaConnectionHandler(node: node, lineLimit: lineLimit,
                                                 role: clusterKey == nil ? .master : nil))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw StorageError.listenFailed(error, address: "\(host):\(port)",
                                            setting: "replicas[\(serverID)].listen, or its port")
        }
    }

    /// Takes reloaded limits and time-outs: the line limit holds at once on every connection, the connection
    /// limit for the next connection; open connections keep their idle and handshake time-outs.
    func apply(limits: ClusterConfig.Limits, timeouts: ClusterConfig.Timeouts) {
        live.value.withLock { $0 = (limits, timeouts) }
        lineLimit.value = limits.wireRequestBytesMax
        connections.limit = limits.replicaConnectionsMax
    }

    func waitUntilClosed() throws { try channel.closeFuture.wait() }

    func shutdown() {
        channel.close(promise: nil)
    }

    func shutdownGroup() { try? group.syncShutdownGracefully() }
}
