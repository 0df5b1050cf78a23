import Foundation
import KVCommon
import KVRuntime
import NIOCore
import NIOPosix

/// The master's persistent, pipelined connection to one replica.
///
/// All state lives on one event loop, so calls leave in exactly the order `send` was called (a transaction's
/// `abrt` can never overtake its prepare). When disconnected, the next call opens a new connection; calls
/// made meanwhile queue behind it. When a connection is up, `onConnected` runs before the queued calls go out,
/// so what it sends (the master's `stat`) is the first thing on the new connection; `onDisconnected` runs when
/// it closes.
final class ReplicaLink: @unchecked Sendable {
    let replica: ClusterConfig.Replica
    private let loop: EventLoop
    let connectTimeoutMs: Int
    /// The longest reply line accepted (`limits.wireReplyBytesMax`, shared by every link; a reload changes it).
    let replyLimit: SharedLimit
    /// A fresh handshake for each new connection (nil: the replica port is not authenticated).
    let handshake: (@Sendable () -> HandshakeInitiator)?
    /// Mutual TLS on the connection (nil: plain TCP). Reads then take this link too, not a blocking connection.
    let tls: LinkTLS?
    private let onConnected: (ReplicaLink) -> Void
    private let onDisconnected: (ReplicaLink) -> Void
    // Event-loop state.
    private var channel: Channel?
    private var handler: ReplicaClientHandler?
    private var connecting = false
    private var queued: [ReplicaCall] = []
    /// Lines of the calls made in this tick, written to `channel` by one task at the end of the tick.
    private var outgoing: ByteBuffer?
    // Readable from any thread.
    private let stateLock = NSLock()
    private var lastError: String?
    private var connected = false

    init(replica: ClusterConfig.Replica, loop: EventLoop, connectTimeoutMs: Int, replyLimit: SharedLimit,
         handshake: (@Sendable () -> HandshakeInitiator)?, tls: LinkTLS?,
         onConnected: @escaping (ReplicaLink) -> Void, onDisconnected: @escaping (ReplicaLink) -> Void) {
        self.replica = replica
        self.handshake = handshake
        self.tls = tls
        self.loop = loop
        self.connectTimeoutMs = connectTimeoutMs
        self.replyLimit = replyLimit
        self.onConnected = onConnected
        self.onDisconnected = onDisconnected
    }

    /// Whether the last connection attempt succeeded and the connection is still open, and the last error.
    var health: (connected: Bool, lastError: String?) {
        stateLock.lock()
        defer { stateLock.unlock() }
        return (connected, lastError)
    }

    /// Sends `request`; `callback` runs on the event loop with the reply or the failure.
    func send(_ request: WireRequest, callback: @escaping (Result<WireReply, LinkFailure>) -> Void) {
        let call = ReplicaCall(line: request.encoded(), expectsValue: request.command == .get, callback: callback)
        if loop.inEventLoop {
            sendOnLoop(call)  // a transaction's calls come from its driver, on this loop: keep their order, skip a task
        } else {
            loop.execute { self.sendOnLoop(call) }
        }
    }

    private func sendOnLoop(_ call: ReplicaCall) {
        if let channel, let handler, channel.isActive {
            enqueue(call, channel: channel, handler: handler)
            return
        }
        queued.append(call)
        if !connecting { connect() }
    }

    /// One write (one syscall) for every call made in this event-loop tick: under load the replies of one read
    /// batch start many calls, and sending them together saves syscalls and wake-ups on both sides.
    private func enqueue(_ call: ReplicaCall, channel: Channel, handler: ReplicaClientHandler) {
        handler.expect(call)
        if outgoing == nil {
            outgoing = channel.allocator.buffer(capacity: max(256, call.line.count))
            // The buffer belongs to this channel: if it closes before the task runs, its calls have already failed
            // (the handler fails what it expects) and the lines are dropped with it, never sent on a new one.
            loop.execute {
                guard self.channel === channel, let lines = self.outgoing else { return }
                self.outgoing = nil
                channel.writeAndFlush(lines, promise: nil)
            }
        }
        outgoing!.writeBytes(call.line)
    }

    private func connect() {
        connecting = true
        channel = nil
        handler = nil
        outgoing = nil
        let address = replica.address
        // Nothing but the handshake goes out before the replica proved it holds the key: queued calls wait.
        let authenticated = loop.makePromise(of: Void.self)
        let (handshake, tls, host) = (handshake, tls, replica.host)
        let connecting = ClientBootstrap(group: loop)
            .connectTimeout(.milliseconds(Int64(connectTimeoutMs)))
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { [replyLimit] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(try tls.clientHandler(host: host)) }
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(limit: replyLimit)))
                    if let handshake {
                        try channel.pipeline.syncOperations.addHandler(
                            LinkAuthClientHandler(initiator: handshake(), authenticated: authenticated))
                    } else {
                        authenticated.succeed()
                    }
                    try channel.pipeline.syncOperations.addHandler(ReplicaClientHandler(address: address))
                }
            }
            .connect(host: replica.host, port: replica.port)
        // A connect that fails never reaches the handshake: its promise must still be completed.
        connecting.whenFailure { authenticated.fail($0) }
        connecting
            .flatMap { channel in
                authenticated.futureResult.map { channel }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
            .whenComplete { result in self.connected(result) }
    }

    private func connected(_ result: Result<Channel, Error>) {
        connecting = false
        let calls = queued
        queued.removeAll()
        switch result {
        case .success(let channel):
            guard let handler = try? channel.pipeline.syncOperations.handler(type: ReplicaClientHandler.self) else {
                channel.close(promise: nil)
                for call in calls { call.callback(.failure(LinkFailure(reason: "connection lost (\(replica.address))"))) }
                return
            }
            self.channel = channel
            self.handler = handler
            setHealth(connected: true, error: nil)
            channel.closeFuture.whenComplete { _ in
                self.loop.execute {
                    if self.channel === channel {
                        self.channel = nil
                        self.handler = nil
                        self.outgoing = nil
                    }
                    self.setHealth(connected: false, error: "connection lost (\(self.replica.address))")
                    self.onDisconnected(self)
                }
            }
            onConnected(self)
            for call in calls { enqueue(call, channel: channel, handler: handler) }
        case .failure(let error):
            let reason = Self.describe(error, address: replica.address)
            setHealth(connected: false, error: reason)
            for call in calls { call.callback(.failure(LinkFailure(reason: reason))) }
        }
    }

    private func setHealth(connected: Bool, error: String?) {
        stateLock.lock()
        self.connected = connected
        if let error { lastError = error } else if connected { lastError = nil }
        stateLock.unlock()
    }

    /// Closes the connection; later sends reconnect. Used for links a reload dropped.
    func close() {
        loop.execute {
            self.channel?.close(promise: nil)
            self.channel = nil
            self.handler = nil
            self.outgoing = nil
        }
    }

    private static func describe(_ error: Error, address: String) -> String {
        if let ioError = error as? IOError, ioError.errnoCode == ECONNREFUSED {
            return "connection refused (\(address))"
        }
        if let connectError = error as? NIOConnectionError {
            if connectError.connectionErrors.contains(where: { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }) {
                return "connection refused (\(address))"
            }
            if connectError.connectionErrors.isEmpty, connectError.dnsAError != nil || connectError.dnsAAAAError != nil {
                return "cannot resolve host (\(address))"
            }
        }
        if let kvError = error as? KVError { return "\(kvError) (\(address))" }
        if let tls = LinkTLS.describe(error, peer: address) { return tls }
        if error is ChannelError { return "connect timed out (\(address))" }
        return "cannot connect (\(address)): \(error)"
    }
}
