import Foundation
import KVCommon
import NIOPosix
import Synchronization

/// The master's read path: a `get` or `list` goes to one participant, on the calling worker thread's own
/// blocking connection to it (`DirectReadConnection`), bypassing the event loop. Also the blocking helpers
/// for `/status` (`stat` of every replica).
final class ReplicaReads: Sendable {
    enum Result {
        /// A replica answered (found, not found, or a listing page).
        case answered(WireReply)
        /// No replica could answer; `reasons` says why for each one tried.
        case unavailable(reasons: [String])
    }

    private let counter = Atomic<UInt64>(0)

    /// Asks one participant that is up, trying the others if it fails. "Not found" is an answer; a key still
    /// locked by an undecided transaction after the wait is not (503).
    func read(_ request: WireRequest, in view: MasterView) -> Result {
        let readable = view.readable
        let count = readable.count
        // Spread reads over the replicas by rotating the starting point (cheaper than shuffling with the
        // system's random source on every read); connected replicas first, in that order. Walked in place.
        let start = count == 0 ? 0 : Int(counter.add(1, ordering: .relaxed).oldValue % UInt64(count))
        var reasons: [String] = []
        for pass in 0..<2 {
            let connectedPass = pass == 0
            for offset in 0..<count {
                let link = readable[(start + offset) % count]
                guard link.health.connected == connectedPass else { continue }
                switch direct(link, request, view: view) {
                case .success(let reply) where reply.status || reply.code == .notFound:
                    return .answered(reply)
                case .success(let reply):
                    reasons.append("\(link.replica.id): \(reply.message)")
                    if reply.code == .timeout { return .unavailable(reasons: reasons) }
                case .failure(let failure):
                    reasons.append("\(link.replica.id): \(failure.reason)")
                }
            }
        }
        return .unavailable(reasons: reasons)
    }

    /// Closes the calling thread's read connections. A thread that reads only now and then (the lease keeper's)
    /// calls it after its reads: its connections are pruned only at its next read, so one kept open would outlive
    /// a reload that removes its replica.
    func closeThreadConnections() {
        Self.threadConnections.currentValue?.byAddress = [:]
    }

    /// `request` on this worker thread's own blocking connection to the replica of `link`.
    private func direct(_ link: ReplicaLink, _ request: WireRequest, view: MasterView) -> Swift.Result<WireReply, LinkFailure> {
        let replica = link.replica
        // The blocking connection speaks plain TCP only: under TLS the read takes the link's event loop.
        if link.tls != nil { return Self.callAll([link], request, timeoutMs: view.config.timeouts.readTimeoutMs)[0].1 }
        let connections = Self.threadConnections.currentValue ?? {
            let box = ConnectionBox()
            Self.threadConnections.currentValue = box
            return box
        }()
        if connections.prunedFor != ObjectIdentifier(view) { connections.prune(keeping: view) }
        let connection = connections.byAddress[replica.address] ?? {
            let made = DirectReadConnection(host: replica.host, port: replica.port, scratch: connections.scratch,
                                            handshake: link.handshake)
            connections.byAddress[replica.address] = made
            return made
        }()
        return connection.call(request.encoded(), timeoutMs: view.config.timeouts.readTimeoutMs,
                               connectTimeoutMs: link.connectTimeoutMs, maxLineBytes: link.replyLimit.value)
            .flatMap { line in
                WireReply.parse(line, valueExpected: request.command == .get)
                    .mapError { LinkFailure(reason: "\($0) from \(replica.address)") }
            }
    }

    private final class ConnectionBox {
        var byAddress: [String: DirectReadConnection] = [:]
        let scratch = ReadScratch()
        /// The view whose replicas `byAddress` was last reduced to: a new view may drop replicas, and the first
        /// read of this thread under it closes its connections to those.
        var prunedFor: ObjectIdentifier?

        func prune(keeping view: MasterView) {
            prunedFor = ObjectIdentifier(view)
            let kept = Set(view.links.map(\.replica.address))
            byAddress = byAddress.filter { kept.contains($0.key) }  // a dropped connection closes in its deinit
        }
    }

    private static let threadConnections = ThreadSpecificVariable<ConnectionBox>()

    /// Sends `request` on every link at once and waits up to `timeoutMs` for all replies.
    static func callAll(_ links: [ReplicaLink], _ request: WireRequest,
                        timeoutMs: Int) -> [(ReplicaLink, Swift.Result<WireReply, LinkFailure>)] {
        let mailbox = Mailbox<(Int, Swift.Result<WireReply, LinkFailure>)>()
        for (index, link) in links.enumerated() { link.send(request) { mailbox.post((index, $0)) } }
        var results: [Int: Swift.Result<WireReply, LinkFailure>] = [:]
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMs) / 1000)
        while results.count < links.count, let (index, result) = mailbox.take(before: deadline) {
            results[index] = result
        }
        return links.enumerated().map { index, link in
            (link, results[index] ?? .failure(LinkFailure(reason: "no answer within \(timeoutMs) ms (\(link.replica.address))")))
        }
    }
}
