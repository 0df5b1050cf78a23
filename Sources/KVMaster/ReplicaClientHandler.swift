import KVCommon
import NIOCore

/// One request in flight to a replica: the line to write and who gets the reply.
struct ReplicaCall: @unchecked Sendable {
    var line: [UInt8]
    var expectsValue: Bool
    var callback: (Result<WireReply, LinkFailure>) -> Void
}

/// Why a call got no reply: the text says what happened and to which address.
struct LinkFailure: Error, Equatable {
    var reason: String
}

/// Pipelined client side of the wire protocol: pairs each reply line with the oldest unanswered call (a
/// replica answers in request order), and fails every unanswered call if the connection drops.
///
/// It does not write: `ReplicaLink` puts the lines of all calls made in one event-loop tick into one buffer and
/// registers each call here with `expect` in the same order, so one write goes through the pipeline per tick
/// instead of one per call (each cost a boxed `NIOAny` and a buffer).
final class ReplicaClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var waiting = CircularBuffer<ReplicaCall>()
    private let address: String

    init(address: String) { self.address = address }

    /// `call`'s line is about to be written on this handler's channel (event loop only).
    func expect(_ call: ReplicaCall) {
        waiting.append(call)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        guard let call = waiting.popFirst() else {
            context.close(promise: nil)
            return
        }
        switch WireReply.parse(Array(line.readableBytesView), valueExpected: call.expectsValue) {
        case .success(let reply): call.callback(.success(reply))
        case .failure(let error): call.callback(.failure(LinkFailure(reason: "\(error) from \(address)")))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll("connection lost (\(address))")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll("connection error (\(address)): \(error)")
        context.close(promise: nil)
    }

    private func failAll(_ reason: String) {
        while let call = waiting.popFirst() { call.callback(.failure(LinkFailure(reason: reason))) }
    }
}
