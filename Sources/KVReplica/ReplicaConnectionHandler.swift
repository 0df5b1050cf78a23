import KVCommon
import KVRuntime
import NIOCore

/// One client connection to a replica. Requests may be pipelined; replies go out in request order even
/// when a later request (a read) is answered before an earlier one (a prepare waiting for its fsync).
///
/// Backpressure: a peer that does not read its replies must not make the replica buffer them without end. Once
/// the socket's outbound buffer passes its high-water mark, or `outstandingMax` requests wait for their replies,
/// the connection stops reading (autoRead off) and holds the lines it already decoded unexecuted; it goes on when
/// the buffer drains below the low-water mark. So one connection holds at most about one read's worth of requests
/// and the replies of `outstandingMax` requests. Replies can be large only for reads, and reads that wait for a
/// key's lock all answer at once when it is released, past any water mark: a connection other than the master's
/// (an operator's, a peer's) stops reading while `waitingReadsMax` of its reads wait. The master's links are
/// exempt: they carry the `com` that releases the lock, and the master is trusted once authenticated.
final class ReplicaConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let node: ReplicaNode
    private let lineLimit: SharedLimit
    private var nextSlot = 0
    private var nextToWrite = 0
    private var ready: [Int: [UInt8]] = [:]
    /// Slots holding prepares, whose replies are votes (for the "replica-after-vote" failpoint).
    private var voteSlots: Set<Int> = []
    private var flushScheduled = false
    /// Between a read batch's first `channelRead` and its `channelReadComplete`, which flushes.
    private var inReadBatch = false
    private var unflushed = false
    /// Replies ready to go, in order, copied into one buffer: one write through the pipeline per flush instead
    /// of one per reply (each cost a boxed `NIOAny` and a buffer).
    private var outgoing: ByteBuffer?
    private static let afterVoteArmed = Failpoints.isArmed("replica-after-vote")
    /// Who the peer proved to be (`LinkAuthenticated`); no line arrives before it is known. Master on a port
    /// without authentication.
    private var role: LinkRole?
    /// For a master's connection, its id and seq epoch, which the fence judges (nil without authentication).
    private var masterLink: MasterLink?
    private var peerID = ""
    /// Decoded lines not yet executed because the connection is paused (see Backpressure above).
    private var held: [ByteBuffer] = []
    private var paused = false
    private var resumeScheduled = false
    /// Replies waiting to be written before this many bytes are handed to the socket at once.
    private static let flushBytes = 64 << 10
    /// Requests executed whose replies have not gone out yet (parked reads, prepares waiting for their fsync).
    static let outstandingMax = 1024
    /// Requests executed and not yet answered on the wire.
    private var outstanding: Int { nextSlot - nextToWrite }
    /// Slots of gets and lists executed and not yet answered (waiting for a lock, for most of their time).
    private var readSlots: Set<Int> = []
    static let waitingReadsMax = 8
    /// Whether the executed requests say stop reading: too many outstanding, or too many waiting reads.
    private var tooManyOutstanding: Bool {
        outstanding >= Self.outstandingMax || (role != .master && readSlots.count >= Self.waitingReadsMax)
    }

    init(node: ReplicaNode, lineLimit: SharedLimit, role: LinkRole?) {
        self.node = node
        self.lineLimit = lineLimit
        self.role = role
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let authenticated = event as? LinkAuthenticated {
            role = authenticated.peer.role
            peerID = authenticated.peer.id
            if role == .master { masterLink = MasterLink(master: authenticated.peer.id, epoch: authenticated.peer.epoch) }
        }
        // The master's links stay open between writes; a peer's or an operator's idle connection is closed.
        if let idle = event as? IdleStateHandler.IdleStateEvent {
            let peer = "\(role?.rawValue ?? "peer") \(peerID) from \(context.remoteAddress.map { "\($0)" } ?? "?")"
            if idle == .read, paused, !context.channel.isWritable {
                // Its replies have not drained for the whole time-out: a peer that does not read is not coming back.
                node.logger.warning("closed the stuck connection of \(peer): it read none of its replies for the idle time-out")
                context.close(promise: nil)
                return
            }
            if idle == .read, let role, role != .master, outstanding == 0, held.isEmpty {
                node.logger.info("closed the idle connection of \(peer)")
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inReadBatch = true
        let line = unwrapInboundIn(data)
        if paused || !held.isEmpty {
            held.append(line)
            return
        }
        execute(line, context: context)
        if tooManyOutstanding { pause(context: context) }
    }

    private func execute(_ line: ByteBuffer, context: ChannelHandlerContext) {
        let slot = nextSlot
        nextSlot += 1
        switch WireRequest.parse(Array(line.readableBytesView), maxLineBytes: lineLimit.value) {
        case .failure(let error):
            complete(slot, node.errorReply(error), context: context)
        case .success(let request) where !(role?.may(request.command) ?? false):
            let who = role?.rawValue ?? "an unauthenticated peer"
            let allowed = role.map { $0.allowedCommands.map(\.rawValue).joined(separator: ", ") } ?? "nothing"
            complete(slot, node.refusal(request, "\(who) may not send '\(request.command.rawValue)' (allowed: \(allowed))"),
                     context: context)
        case .success(let request):
            if request.command == .put || request.command == .del { voteSlots.insert(slot) }
            if request.command == .get || request.command == .list { readSlots.insert(slot) }
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            node.submit(request, link: masterLink, callerFlushes: true) { bytes in
                if loop.inEventLoop {
                    let (handler, context) = bound.value
                    handler.complete(slot, bytes, context: context)
                } else {
                    loop.execute {
                        let (handler, context) = bound.value
                        handler.complete(slot, bytes, context: context)
                    }
                }
            }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { scheduleResume(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Resumes from the event loop's next turn: never from inside a write or a reply's completion, which the
    /// executed lines would re-enter.
    private func scheduleResume(context: ChannelHandlerContext) {
        guard paused, !resumeScheduled else { return }
        resumeScheduled = true
        onNextTurn(context) { handler, context in
            handler.resumeScheduled = false
            handler.resume(context: context)
        }
    }

    /// Runs `body` on this connection's event loop once the current turn is over.
    private func onNextTurn(_ context: ChannelHandlerContext,
                            _ body: @escaping (ReplicaConnectionHandler, ChannelHandlerContext) -> Void) {
        let bound = NIOLoopBound((self, context, body), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context, body) = bound.value
            body(handler, context)
        }
    }

    private func pause(context: ChannelHandlerContext) {
        guard !paused else { return }
        paused = true
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    /// Executes the held lines while neither the socket nor the outstanding requests say stop, then reads again.
    private func resume(context: ChannelHandlerContext) {
        guard paused, context.channel.isWritable, !tooManyOutstanding else { return }
        paused = false
        var index = 0
        while index < held.count, !paused {
            execute(held[index], context: context)
            index += 1
            if tooManyOutstanding || !context.channel.isWritable { pause(context: context) }
        }
        held.removeFirst(index)
        node.flushLog(force: !ready.isEmpty)
        send(context: context)
        if !paused {
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            context.read()
        }
    }

    /// The end of a read batch: one write and fsync for every record its requests queued, made right here on
    /// the event loop (no hand-off to another thread), then their replies go out.
    func channelReadComplete(context: ChannelHandlerContext) {
        // Replies that are ready but held behind an earlier one (a `com` whose unforced COMMIT record is not
        // durable yet) must not wait for the lazy flush: then flush everything now.
        node.flushLog(force: !ready.isEmpty)
        inReadBatch = false
        if unflushed {
            unflushed = false
            send(context: context)
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is LineFrameDecoder.LineTooLong {
            let reply = node.errorReply(.wireLineTooLong(limit: lineLimit.value))
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: reply)), promise: nil)
        }
        context.close(promise: nil)
    }

    private func complete(_ slot: Int, _ bytes: [UInt8], context: ChannelHandlerContext) {
        ready[slot] = bytes
        let readDone = readSlots.remove(slot) != nil
        var wrote = false
        var votes = false
        while let next = ready.removeValue(forKey: nextToWrite) {
            if outgoing == nil { outgoing = context.channel.allocator.buffer(capacity: max(256, next.count)) }
            outgoing!.writeBytes(next)
            if voteSlots.remove(nextToWrite) != nil { votes = true }
            nextToWrite += 1
            wrote = true
        }
        if paused, wrote || readDone, outstanding < Self.outstandingMax / 2,
           role == .master || readSlots.count < Self.waitingReadsMax / 2 {
            scheduleResume(context: context)
        }
        if votes && Self.afterVoteArmed {
            send(context: context)
            Failpoints.hit("replica-after-vote")
        } else if wrote, let pending = outgoing, pending.readableBytes >= Self.flushBytes {
            // Large replies go out at once, so the socket's water marks see them (and pause reading).
            send(context: context)
        } else if wrote && inReadBatch {
            unflushed = true  // channelReadComplete flushes
        } else if wrote && !flushScheduled {
            // One flush for every reply completed in this event-loop tick (a group commit completes many).
            flushScheduled = true
            onNextTurn(context) { handler, context in
                handler.flushScheduled = false
                handler.send(context: context)
            }
        }
    }

    /// Writes and flushes the replies gathered so far.
    private func send(context: ChannelHandlerContext) {
        guard let bytes = outgoing else { return }
        outgoing = nil
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        if !context.channel.isWritable { pause(context: context) }
    }
}
