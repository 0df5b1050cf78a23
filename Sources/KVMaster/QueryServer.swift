import KVCommon
import KVRuntime
import Logging
import NIOCore
import NIOPosix

/// Where in-doubt replicas ask the master for an outcome: `master.query_listen`, the wire protocol, one
/// command: `seq;qry;;`. Answers `committed`, `aborted` (and from then on the master will never commit that
/// seq), or `busy` while the commit record is being written.
final class QueryServer {
    private let channel: Channel

    /// With `clusterKey`, only replicas that pass the link handshake (within `timeouts.handshakeTimeoutMs`) may ask;
    /// at most `limits.replicaConnectionsMax` connections are held at once.
    init(group: EventLoopGroup, host: String, port: Int, node: MasterNode, serverID: String, clusterKey: ClusterKey?,
         tls: LinkTLS?, limits: ClusterConfig.Limits, timeouts: ClusterConfig.Timeouts, logger: Logger) throws {
        let connections = ConnectionCount(limit: limits.replicaConnectionsMax)
        let refusal = WireReply(status: false, code: .busy, message: "too many connections to \(serverID)'s query_listen "
                                    + "(limits.replica_connections_max)", seq: nil, server: serverID).encoded()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionLimitHandler(count: connections, refusal: refusal))
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls.serverHandler()) }
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(maxLineBytes: 256)))
                    if let clusterKey {
                        let peer = "\(channel.remoteAddress.map { "\($0)" } ?? "?")"
                        let responder = HandshakeResponder(serverID: serverID, clusterKey: clusterKey, allowedRoles: [.replica])
                        try channel.pipeline.syncOperations.addHandler(LinkAuthServerHandler(
                            responder: responder, timeoutMs: timeouts.handshakeTimeoutMs) {
                            logger.warning("query_listen refused a connection from \(peer): \($0)")
                        })
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        QueryHandler(node: node, serverID: serverID))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            throw StorageError.listenFailed(error, address: "\(host):\(port)", setting: "master.query_listen")
        }
    }

    func close() { channel.close(promise: nil) }
}

/// Answers `qry` lines in order: each answer is written as the master's state machine gives it, on the loop.
private final class QueryHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let node: MasterNode
    private let serverID: String

    init(node: MasterNode, serverID: String) {
        self.node = node
        self.serverID = serverID
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let respond = { (reply: WireReply) in
            let (handler, context) = bound.value
            context.writeAndFlush(handler.wrapOutboundOut(context.channel.allocator.buffer(bytes: reply.encoded())),
                                  promise: nil)
        }
        switch WireRequest.parse(Array(line.readableBytesView), maxLineBytes: 256) {
        case .success(let request) where request.command == .qry:
            node.query(request.seq!, respond: respond)
        case .success(let request):
            respond(WireReply(status: false, code: .badRequest,
                              message: "the master answers only 'seq;qry;;', not '\(request.command.rawValue)'",
                              seq: nil, server: serverID))
        case .failure(let error):
            respond(WireReply(status: false, code: .badRequest, message: error.description, seq: nil, server: serverID))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
