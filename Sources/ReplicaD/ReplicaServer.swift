import KVCommon
import KVRuntime
import Logging
import NIOCore
import NIOPosix

/// The replica's TCP listener: one pipeline per connection, lines in, JSON lines out.
final class ReplicaServer {
    let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    init(node: ReplicaNode, host: String, port: Int, maxLineBytes: Int, threads: Int) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(maxLineBytes: maxLineBytes)))
                    try channel.pipeline.syncOperations.addHandler(
                        ReplicaConnectionHandler(node: node, maxLineBytes: maxLineBytes))
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
