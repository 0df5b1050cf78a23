import KVCommon
import KVRuntime
import Logging
import NIOCore
import NIOPosix

/// The replica's TCP listener: one pipeline per connection, lines in, JSON lines out.
final class ReplicaServer {
    let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    /// With `clusterKey`, every connection must pass the link handshake (as replica `serverID`) before anything
    /// it sends is executed, and each command is checked against the peer's role; without one, the port is open.
    init(node: ReplicaNode, host: String, port: Int, maxLineBytes: Int, threads: Int, clusterKey: ClusterKey?,
         serverID: String, logger: Logger) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(maxLineBytes: maxLineBytes)))
                    if let clusterKey {
                        let peer = "\(channel.remoteAddress.map { "\($0)" } ?? "?")"
                        let responder = HandshakeResponder(serverID: serverID, clusterKey: clusterKey,
                                                           allowedRoles: [.master, .replica, .operator])
                        try channel.pipeline.syncOperations.addHandler(LinkAuthServerHandler(responder: responder) {
                            logger.warning("refused a connection from \(peer): \($0)")
                        })
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        ReplicaConnectionHandler(node: node, maxLineBytes: maxLineBytes,
                                                 role: clusterKey == nil ? .master : nil))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    func waitUntilClosed() throws { try channel.closeFuture.wait() }

    func shutdown() {
        channel.close(promise: nil)
    }

    func shutdownGroup() { try? group.syncShutdownGracefully() }
}
