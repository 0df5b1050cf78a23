import KVCommon
import NIOCore

/// The client side of the link handshake in a channel pipeline, right after the line decoder: sends the hello
/// when the connection is up, answers the challenge, and completes `authenticated` once the server confirmed;
/// lines after that pass through. The caller sends nothing on the channel before `authenticated` succeeds. A
/// failure (the server lacks the key, is another replica, or refused us) fails it and closes the connection.
public final class LinkAuthClientHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var initiator: HandshakeInitiator
    private let authenticated: EventLoopPromise<Void>
    private var done = false

    public init(initiator: HandshakeInitiator, authenticated: EventLoopPromise<Void>) {
        self.initiator = initiator
        self.authenticated = authenticated
    }

    /// A fresh initiator for a link of `role`; `expectedServer` is the id of the server dialled, if known.
    public static func initiator(key: ClusterKey.RoleKey, id: String, epoch: UInt64 = 0,
                                 expectedServer: String? = nil) -> HandshakeInitiator {
        HandshakeInitiator(key: key, id: id, epoch: epoch, nonce: freshNonce(), expectedServer: expectedServer)
    }

    public func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: initiator.hello)), promise: nil)
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if done {
            context.fireChannelRead(data)
            return
        }
        switch initiator.receive(Array(unwrapInboundIn(data).readableBytesView)) {
        case .success(.send(let line)):
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: line)), promise: nil)
        case .success(.authenticated):
            done = true
            authenticated.succeed()
        case .failure(let error):
            done = true
            authenticated.fail(error)
            context.close(promise: nil)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            authenticated.fail(KVError.authFailed("the server closed the connection during the handshake"))
        }
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !done {
            done = true
            authenticated.fail(error)
        }
        context.fireErrorCaught(error)
    }
}

/// A handshake nonce from the system's cryptographic generator (the core takes nonces as input, to stay pure).
func freshNonce() -> [UInt8] {
    var random = SystemRandomNumberGenerator()
    return (0..<LinkHandshake.nonceBytes).map { _ in UInt8.random(in: 0...255, using: &random) }
}
