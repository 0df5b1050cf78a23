import KVCommon
import NIOCore

/// The server side of the link handshake in a channel pipeline, right after the line decoder: answers the
/// handshake lines, and passes nothing on until the peer is authenticated; then announces the peer
/// (`LinkAuthenticated`, a user inbound event) and passes every later line through. A failed handshake gets one
/// error line and the connection is closed; the lines after it are dropped unread.
public final class LinkAuthServerHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var responder: HandshakeResponder
    private var authenticated = false
    private var closing = false
    private let onRejected: (String) -> Void
    private let timeoutMs: Int
    private var deadline: Scheduled<Void>?

    /// `onRejected` gets the reason of every refused handshake (for the log); a connection that has not finished
    /// its handshake after `timeoutMs` is refused too (a silent connection must not hold a place for ever).
    public init(responder: HandshakeResponder, timeoutMs: Int = 5000, onRejected: @escaping (String) -> Void = { _ in }) {
        self.responder = responder
        self.timeoutMs = timeoutMs
        self.onRejected = onRejected
    }

    public func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: .milliseconds(Int64(timeoutMs))) {
            let (handler, context) = bound.value
            guard !handler.authenticated, !handler.closing else { return }
            let (line, reason) = handler.responder.timedOut(afterMs: handler.timeoutMs)
            handler.reject(line, reason: reason, context: context)
        }
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    private func reject(_ bytes: [UInt8], reason: String, context: ChannelHandlerContext) {
        closing = true
        deadline?.cancel()
        onRejected(reason)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes))).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if authenticated {
            context.fireChannelRead(data)
            return
        }
        guard !closing else { return }
        let line = Array(unwrapInboundIn(data).readableBytesView)
        switch responder.receive(line, nonce: freshNonce()) {
        case .reply(let bytes):
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
        case .accepted(let peer, let bytes):
            authenticated = true
            deadline?.cancel()
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            context.fireUserInboundEventTriggered(LinkAuthenticated(peer: peer))
        case .rejected(let bytes, let reason):
            reject(bytes, reason: reason, context: context)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if authenticated { context.fireChannelReadComplete() }
    }

    /// Before the handshake, an error (a failed TLS handshake in front of this handler, a line over the limit)
    /// refuses the connection like a bad handshake line, and is logged as the reason.
    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !authenticated else {
            context.fireErrorCaught(error)
            return
        }
        guard !closing else { return }
        closing = true
        deadline?.cancel()
        onRejected("\(error)")
        context.close(promise: nil)
    }
}

/// Fired through the pipeline once a link's peer proved who it is, before any line of it is passed on.
public struct LinkAuthenticated: Sendable {
    public var peer: LinkPeer
}
