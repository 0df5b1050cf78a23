import KVCommon
import NIOCore
import NIOPosix

/// A one-shot wire-protocol call: connect, send one request, read one reply line, close. For the rare
/// out-of-band questions (an in-doubt replica asking the master or a peer `seq;qry;;`), not the data path.
public enum WireCall {
    /// With `handshake`, the request leaves only after the link handshake succeeded; with `tls`, inside mutual TLS.
    public static func call(_ request: WireRequest, host: String, port: Int, timeoutMs: Int, group: EventLoopGroup,
                            handshake: HandshakeInitiator? = nil, tls: LinkTLS? = nil) -> Result<WireReply, WireCallError> {
        let loop = group.next()
        let promise = loop.makePromise(of: ByteBuffer.self)
        let authenticated = loop.makePromise(of: Void.self)
        let connect = ClientBootstrap(group: loop)
            .connectTimeout(.milliseconds(Int64(timeoutMs)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(try tls.clientHandler(host: host)) }
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(maxLineBytes: 1 << 16)))
                    if let handshake {
                        try channel.pipeline.syncOperations.addHandler(
                            LinkAuthClientHandler(initiator: handshake, authenticated: authenticated))
                    } else {
                        authenticated.succeed()
                    }
                    try channel.pipeline.syncOperations.addHandler(FirstLineHandler(promise: promise))
                }
            }
            .connect(host: host, port: port)
        let channel: Channel
        do {
            channel = try connect.wait()
        } catch {
            promise.fail(error)
            authenticated.fail(error)
            return .failure(WireCallError(reason: LinkTLS.describe(error, peer: "\(host):\(port)")
                ?? "cannot connect to \(host):\(port): \(error)"))
        }
        defer { channel.close(promise: nil) }
        let timeout = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeoutMs))) {
            let late = WireCallError(reason: "no answer from \(host):\(port) within \(timeoutMs) ms")
            authenticated.fail(late)
            promise.fail(late)
        }
        defer { timeout.cancel() }
        do {
            try authenticated.futureResult.wait()
        } catch {
            return .failure(WireCallError(reason: LinkTLS.describe(error, peer: "\(host):\(port)")
                ?? "\(host):\(port): \(error)"))
        }
        channel.writeAndFlush(channel.allocator.buffer(bytes: request.encoded()), promise: nil)
        do {
            let line = try promise.futureResult.wait()
            return WireReply.parse(Array(line.readableBytesView), valueExpected: false)
                .mapError { WireCallError(reason: "\($0) from \(host):\(port)") }
        } catch let error as WireCallError {
            return .failure(error)
        } catch {
            return .failure(WireCallError(reason: "connection to \(host):\(port) failed: \(error)"))
        }
    }
}

/// Why a `WireCall` got no reply.
public struct WireCallError: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

private final class FirstLineHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let promise: EventLoopPromise<ByteBuffer>

    init(promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        promise.succeed(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(WireCallError(reason: "connection closed before an answer"))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
