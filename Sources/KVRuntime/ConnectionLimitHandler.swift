import NIOCore
import Synchronization

/// How many connections a listener holds, shared by its pipelines.
public final class ConnectionCount: Sendable {
    private let limitValue: Atomic<Int>
    private let open = Atomic<Int>(0)

    public init(limit: Int) {
        precondition(limit > 0, "a listener needs room for one connection")
        limitValue = Atomic(limit)
    }

    /// Places in all; a reload may change it (connections held beyond a lowered limit stay until they close).
    public var limit: Int {
        get { limitValue.load(ordering: .relaxed) }
        set {
            precondition(newValue > 0, "a listener needs room for one connection")
            limitValue.store(newValue, ordering: .relaxed)
        }
    }

    public var current: Int { open.load(ordering: .relaxed) }

    /// Takes a place; false (and nothing taken) when every place is taken.
    func acquire() -> Bool {
        var value = open.load(ordering: .relaxed)
        let limit = self.limit
        while value < limit {
            let (exchanged, original) = open.compareExchange(expected: value, desired: value + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            value = original
        }
        return false
    }

    func release() { open.subtract(1, ordering: .acquiringAndReleasing) }
}

/// First in a connection's pipeline: past the listener's limit, the connection gets `refusal` (one line) and is
/// closed before anything else reads from it, so a flood of connections costs a bounded amount of memory.
public final class ConnectionLimitHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let count: ConnectionCount
    private let refusal: [UInt8]
    private var counted = false

    public init(count: ConnectionCount, refusal: [UInt8]) {
        self.count = count
        self.refusal = refusal
    }

    public func channelActive(context: ChannelHandlerContext) {
        guard count.acquire() else {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: refusal))).whenComplete { _ in
                context.close(promise: nil)
            }
            return
        }
        counted = true
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if counted { context.fireChannelRead(data) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if counted {
            counted = false
            count.release()
        }
        context.fireChannelInactive()
    }
}
