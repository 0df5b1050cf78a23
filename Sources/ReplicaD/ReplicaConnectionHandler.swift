import KVCommon
import KVRuntime
import NIOCore

/// One client connection to a replica. Requests may be pipelined; replies go out in request order even
/// when a later request (a read) is answered before an earlier one (a prepare waiting for its fsync).
final class ReplicaConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let node: ReplicaNode
    private let maxLineBytes: Int
    private var nextSlot = 0
    private var nextToWrite = 0
    private var ready: [Int: [UInt8]] = [:]
    /// Slots holding prepares, whose replies are votes (for the "replica-after-vote" failpoint).
    private var voteSlots: Set<Int> = []

    init(node: ReplicaNode, maxLineBytes: Int) {
        self.node = node
        self.maxLineBytes = maxLineBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        let slot = nextSlot
        nextSlot += 1
        switch WireRequest.parse(Array(line.readableBytesView), maxLineBytes: maxLineBytes) {
        case .failure(let error):
            complete(slot, node.errorReply(error), context: context)
        case .success(let request):
            if request.command == .put || request.command == .del { voteSlots.insert(slot) }
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            node.submit(request) { bytes in
                loop.execute {
                    let (handler, context) = bound.value
                    handler.complete(slot, bytes, context: context)
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is LineFrameDecoder.LineTooLong {
            let reply = node.errorReply(.wireLineTooLong(limit: maxLineBytes))
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: reply)), promise: nil)
        }
        context.close(promise: nil)
    }

    private func complete(_ slot: Int, _ bytes: [UInt8], context: ChannelHandlerContext) {
        ready[slot] = bytes
        var wrote = false
        var votes = false
        while let next = ready.removeValue(forKey: nextToWrite) {
            context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: next)), promise: nil)
            if voteSlots.remove(nextToWrite) != nil { votes = true }
            nextToWrite += 1
            wrote = true
        }
        if wrote { context.flush() }
        if votes { Failpoints.hit("replica-after-vote") }
    }
}
