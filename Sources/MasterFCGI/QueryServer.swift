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

    init(group: EventLoopGroup, host: String, port: Int, registry: InFlightRegistry, serverID: String,
         logger: Logger) throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(maxLineBytes: 256)))
                    try channel.pipeline.syncOperations.addHandler(
                        QueryHandler(registry: registry, serverID: serverID, logger: logger))
                }
            }
        channel = try bootstrap.bind(host: host, port: port).wait()
    }

    func close() { channel.close(promise: nil) }
}

/// Answers one `qry` line at a time (the answer is computed synchronously, so order is kept).
private final class QueryHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let registry: InFlightRegistry
    private let serverID: String
    private let logger: Logger

    init(registry: InFlightRegistry, serverID: String, logger: Logger) {
        self.registry = registry
        self.serverID = serverID
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        let reply: WireReply
        switch WireRequest.parse(Array(line.readableBytesView), maxLineBytes: 256) {
        case .success(let request) where request.command == .qry:
            let seq = request.seq!
            switch registry.resolve(seq, reason: "a replica asked for the outcome of \(seq) before it was decided") {
            case .commit:
                reply = WireReply(status: true, code: .committed, message: "committed", seq: seq, server: serverID)
            case .abort:
                reply = WireReply(status: true, code: .aborted, message: "aborted", seq: seq, server: serverID)
            case .pending:
                reply = WireReply(status: false, code: .busy, message: "commit being recorded; ask again", seq: seq,
                                  server: serverID)
            }
            logger.info("qry \(seq): answered \(reply.code.rawValue)")
        case .success(let request):
            reply = WireReply(status: false, code: .badRequest,
                              message: "the master answers only 'seq;qry;;', not '\(request.command.rawValue)'",
                              seq: nil, server: serverID)
        case .failure(let error):
            reply = WireReply(status: false, code: .badRequest, message: error.description, seq: nil, server: serverID)
        }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: reply.encoded())), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
