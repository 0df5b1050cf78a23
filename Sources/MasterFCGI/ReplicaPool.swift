import Foundation
import KVCommon
import NIOCore
import NIOPosix

/// One `ReplicaLink` per replica of the configuration, on a small shared event-loop group, plus a blocking
/// helper for worker threads that need one reply with a deadline.
final class ReplicaPool: @unchecked Sendable {
    let group: MultiThreadedEventLoopGroup
    let links: [ReplicaLink]
    private let byID: [String: ReplicaLink]

    init(config: ClusterConfig, threads: Int, onConnect: @escaping (ReplicaLink, WireReply) -> Void) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        self.group = group
        links = config.replicas.map { replica in
            ReplicaLink(replica: replica, loop: group.next(), connectTimeoutMs: config.timeouts.connectTimeoutMs,
                        maxLineBytes: config.limits.wireLineBytesMax, onConnect: onConnect)
        }
        byID = Dictionary(uniqueKeysWithValues: links.map { ($0.replica.id, $0) })
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

    func shutdown() { try? group.syncShutdownGracefully() }
}
