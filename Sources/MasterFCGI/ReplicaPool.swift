import Foundation
import KVCommon
import NIOCore
import NIOPosix

/// One `ReplicaLink` per replica of one configuration, plus blocking helpers for worker threads that need
/// replies with a deadline. Immutable: a reload builds a new pool, reusing the links (and their open
/// connections) of replicas whose id and address did not change.
final class ReplicaPool: @unchecked Sendable {
    let links: [ReplicaLink]
    private let byID: [String: ReplicaLink]

    init(config: ClusterConfig, group: EventLoopGroup, reusing previous: ReplicaPool? = nil,
         onConnect: @escaping (ReplicaLink, WireReply) -> Void) {
        links = config.replicas.map { replica in
            if let old = previous?.link(replica.id), old.replica == replica { return old }
            return ReplicaLink(replica: replica, loop: group.next(), connectTimeoutMs: config.timeouts.connectTimeoutMs,
                               maxLineBytes: config.limits.wireReplyBytesMax, onConnect: onConnect)
        }
        byID = Dictionary(uniqueKeysWithValues: links.map { ($0.replica.id, $0) })
    }

    /// Links of `self` that `next` no longer uses.
    func linksDropped(by next: ReplicaPool) -> [ReplicaLink] {
        links.filter { link in next.link(link.replica.id) !== link }
    }

    func link(_ id: String) -> ReplicaLink? { byID[id] }

    var ids: [String] { links.map(\.replica.id) }

    /// Sends `request` to `link` and waits up to `timeoutMs` for the reply.
    func call(_ link: ReplicaLink, _ request: WireRequest, timeoutMs: Int) -> Result<WireReply, LinkFailure> {
        let mailbox = Mailbox<Result<WireReply, LinkFailure>>()
        link.send(request) { mailbox.post($0) }
        return mailbox.take(before: Date(timeIntervalSinceNow: Double(timeoutMs) / 1000))
            ?? .failure(LinkFailure(reason: "no answer within \(timeoutMs) ms (\(link.replica.address))"))
    }

    /// A read (`get`, `list`) sent on the calling worker thread's own blocking connection to the replica of
    /// `link` (see `DirectReadConnection`), bypassing the event loop.
    func read(_ link: ReplicaLink, _ request: WireRequest, timeoutMs: Int) -> Result<WireReply, LinkFailure> {
        let replica = link.replica
        let connections = Self.threadConnections.currentValue ?? {
            let box = ConnectionBox()
            Self.threadConnections.currentValue = box
            return box
        }()
        if connections.prunedFor != ObjectIdentifier(self) { connections.prune(keeping: self) }
        let connection = connections.byAddress[replica.address] ?? {
            let made = DirectReadConnection(host: replica.host, port: replica.port, scratch: connections.scratch)
            connections.byAddress[replica.address] = made
            return made
        }()
        return connection.call(request.encoded(), timeoutMs: timeoutMs, connectTimeoutMs: link.connectTimeoutMs,
                               maxLineBytes: link.maxLineBytes)
            .flatMap { line in
                WireReply.parse(line, valueExpected: request.command == .get)
                    .mapError { LinkFailure(reason: "\($0) from \(replica.address)") }
            }
    }

    private final class ConnectionBox {
        var byAddress: [String: DirectReadConnection] = [:]
        let scratch = ReadScratch()
        /// The pool whose replicas `byAddress` was last reduced to: a reload makes a new pool, and the first read
        /// of this thread under it closes its connections to replicas the new configuration dropped.
        var prunedFor: ObjectIdentifier?

        func prune(keeping pool: ReplicaPool) {
            prunedFor = ObjectIdentifier(pool)
            let kept = Set(pool.links.map(\.replica.address))
            byAddress = byAddress.filter { kept.contains($0.key) }  // a dropped connection closes in its deinit
        }
    }

    private static let threadConnections = ThreadSpecificVariable<ConnectionBox>()

    /// Sends `request` to every link at once and waits up to `timeoutMs` for all replies.
    func callAll(_ request: WireRequest, timeoutMs: Int) -> [(ReplicaLink, Result<WireReply, LinkFailure>)] {
        let mailbox = Mailbox<(Int, Result<WireReply, LinkFailure>)>()
        for (index, link) in links.enumerated() { link.send(request) { mailbox.post((index, $0)) } }
        var results: [Int: Result<WireReply, LinkFailure>] = [:]
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMs) / 1000)
        while results.count < links.count, let (index, result) = mailbox.take(before: deadline) {
            results[index] = result
        }
        return links.enumerated().map { index, link in
            (link, results[index] ?? .failure(LinkFailure(reason: "no answer within \(timeoutMs) ms (\(link.replica.address))")))
        }
    }
}
