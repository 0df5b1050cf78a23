import Foundation
import KVCommon
import Logging

/// Brings one replica to exactly the committed state of a healthy one, then lets it take part again.
///
/// 1. Track every key committed from now on (`DirtyKeys`); `reset` the target (empty, out of sync).
/// 2. Copy a consistent snapshot of a healthy source (`snap`, `page`) with pipelined `load`s. Writes go on.
/// 3. Copy the keys committed meanwhile again (value or absence read from the source), until few remain.
/// 4. Hold writes back briefly (`WriteGate`), copy the last dirty keys, compare key count and content
///    digest of source and target, and only if they are equal: `join` the target and put it back into the
///    write and read set. Otherwise start over (after a pause), never joining a replica that differs.
final class SyncJob {
    struct Progress: Sendable {
        var phase: String
        var loaded: Int
        var total: Int
        var attempt: Int
        var error: String?
    }

    private let replica: String
    private let views: ClusterViews
    private let gate: WriteGate
    private let dirty: DirtyKeys
    private let logger: Logger
    private let report: (Progress) -> Void
    private var progress = Progress(phase: "starting", loaded: 0, total: 0, attempt: 0, error: nil)

    init(replica: String, views: ClusterViews, gate: WriteGate, dirty: DirtyKeys, logger: Logger,
         report: @escaping (Progress) -> Void) {
        self.replica = replica
        self.views = views
        self.gate = gate
        self.dirty = dirty
        self.logger = logger
        self.report = report
    }

    struct Failure: Error { var reason: String }

    /// Tries until the replica joins (true) or leaves the configuration (false).
    @discardableResult
    func run() -> Bool {
        while views.current.config.replica(id: replica) != nil {
            progress.attempt += 1
            let started = Date()
            do {
                try attempt()
                let seconds = String(format: "%.2f", Date().timeIntervalSince(started))
                logger.notice("\(replica) is in sync (\(progress.total) keys copied in \(seconds) s) and takes part again")
                update(phase: "joined")
                return true
            } catch let failure as Failure {
                progress.error = failure.reason
                update(phase: "retrying")
                logger.warning("sync of \(replica) failed (attempt \(progress.attempt)): \(failure.reason); retrying")
            } catch {
                progress.error = "\(error)"
                update(phase: "retrying")
            }
            dirty.stopTracking(replica)
            Thread.sleep(forTimeInterval: min(5, 0.2 * Double(progress.attempt)))
        }
        views.markJoined(replica)
        return false
    }

    private func attempt() throws {
        let view = views.current
        let timeouts = view.config.timeouts
        guard let target = view.pool.link(replica) else { throw Failure(reason: "\(replica) is not configured") }
        guard let source = view.pool.links.first(where: { $0.replica.id != replica && view.participants.contains($0.replica.id)
            && $0.health.connected && $0.lastJoined == true })
        else { throw Failure(reason: "no healthy replica to copy from") }
        dirty.startTracking(replica)
        defer { dirty.stopTracking(replica) }
        update(phase: "reset")
        try expectOK(view.pool.call(target, WireRequest(seq: nil, command: .reset), timeoutMs: timeouts.readTimeoutMs), "reset")
        let opened = try expectOK(view.pool.call(source, WireRequest(seq: nil, command: .snap),
                                                 timeoutMs: timeouts.readTimeoutMs), "snap")
        guard let scan = opened.seq, let total = opened.stat?.keys else { throw Failure(reason: "snap gave no id") }
        progress.total = total
        progress.loaded = 0
        update(phase: "copying from \(source.replica.id)")
        while true {
            let reply = try expectOK(view.pool.call(source, WireRequest(seq: scan, command: .page),
                                                    timeoutMs: timeouts.readTimeoutMs), "page")
            guard let page = reply.page else { throw Failure(reason: "page without entries") }
            try send(page.entries.map(\.loadRequest), to: target, timeoutMs: timeouts.readTimeoutMs)
            progress.loaded += page.entries.count
            update(phase: "copying from \(source.replica.id)")
            if page.done { break }
        }
        for _ in 0..<10 {
            let keys = dirty.take(replica)
            if keys.count < 64 { try copy(keys, from: source, to: target, view: view); break }
            update(phase: "catching up \(keys.count) keys")
            try copy(keys, from: source, to: target, view: view)
        }
        update(phase: "verifying")
        let result: Result<Void, Failure>? = gate.whilePaused(timeoutMs: timeouts.prepareTimeoutMs + timeouts.commitTimeoutMs) {
            do {
                try copy(dirty.take(replica), from: source, to: target, view: view)
                let a = try expectOK(view.pool.call(source, .stat, timeoutMs: timeouts.readTimeoutMs), "stat").stat
                let b = try expectOK(view.pool.call(target, .stat, timeoutMs: timeouts.readTimeoutMs), "stat").stat
                guard let a, let b, a.keys == b.keys, a.digest == b.digest else {
                    return .failure(Failure(reason: "digest differs after copy (\(source.replica.id): \(a?.keys ?? -1) keys "
                        + "\(a?.digestHex ?? "?"), \(replica): \(b?.keys ?? -1) keys \(b?.digestHex ?? "?"))"))
                }
                _ = try expectOK(view.pool.call(target, WireRequest(seq: nil, command: .join), timeoutMs: timeouts.readTimeoutMs), "join")
                target.note(stat: WireReply(status: true, code: .ok, message: "", seq: nil, server: replica,
                                            stat: { var s = b; s.joined = true; return s }()))
                views.markJoined(replica)
                return .success(())
            } catch let failure as Failure {
                return .failure(failure)
            } catch {
                return .failure(Failure(reason: "\(error)"))
            }
        }
        guard let result else { throw Failure(reason: "running writes did not finish in time for the final step") }
        try result.get()
    }

    /// Copies each key's committed state (value or absence) from `source` to `target`. The reads are pipelined
    /// on the source's link, like the writes to the target: one at a time, a catch-up round could take longer
    /// than the writes it chases, and never converge.
    private func copy(_ keys: Set<[UInt8]>, from source: ReplicaLink, to target: ReplicaLink, view: ClusterView) throws {
        guard !keys.isEmpty else { return }
        let ordered = Array(keys)
        let timeoutMs = view.config.timeouts.readTimeoutMs
        var requests = [WireRequest?](repeating: nil, count: ordered.count)
        try pipelined(ordered.map { .get($0) }, on: source, timeoutMs: timeoutMs,
                      unanswered: "\(source.replica.id) did not answer \(ordered.count) reads in time") { index, result in
            let key = ordered[index]
            switch result {
            case .success(let reply) where reply.status:
                let entry = SyncPage.Entry(key: key, value: reply.value ?? [], version: reply.seq ?? 0,
                                           created: reply.created ?? reply.seq ?? 0)
                requests[index] = entry.loadRequest
            case .success(let reply) where reply.code == .notFound:
                requests[index] = WireRequest(seq: nil, command: .drop, key: key)
            case .success(let reply):
                throw Failure(reason: "reading \(keys.count) changed keys from \(source.replica.id): \(reply.message)")
            case .failure(let failure):
                throw Failure(reason: failure.reason)
            }
        }
        try send(requests.compactMap { $0 }, to: target, timeoutMs: timeoutMs)
    }

    /// Sends `requests` pipelined and waits for every reply to be a success.
    private func send(_ requests: [WireRequest], to target: ReplicaLink, timeoutMs: Int) throws {
        try pipelined(requests, on: target, timeoutMs: timeoutMs, unanswered: "\(replica) did not answer in time") {
            try expectOK($1, "load")
        }
    }

    /// Sends `requests` on `link` without waiting in between and hands each reply to `handle` (with the index of
    /// its request) as it arrives; an error `handle` throws ends the wait. Throws `unanswered` unless every reply
    /// arrives within `timeoutMs` plus 0.5 ms per request.
    private func pipelined(_ requests: [WireRequest], on link: ReplicaLink, timeoutMs: Int, unanswered: String,
                           handle: (Int, Result<WireReply, LinkFailure>) throws -> Void) throws {
        let mailbox = Mailbox<(Int, Result<WireReply, LinkFailure>)>()
        for (index, request) in requests.enumerated() { link.send(request) { mailbox.post((index, $0)) } }
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMs) / 1000 + Double(requests.count) / 2000)
        for _ in requests {
            guard let (index, result) = mailbox.take(before: deadline) else { throw Failure(reason: unanswered) }
            try handle(index, result)
        }
    }

    @discardableResult
    private func expectOK(_ result: Result<WireReply, LinkFailure>, _ what: String) throws -> WireReply {
        switch result {
        case .success(let reply) where reply.status: return reply
        case .success(let reply): throw Failure(reason: "\(what) on \(reply.server): \(reply.message)")
        case .failure(let failure): throw Failure(reason: "\(what): \(failure.reason)")
        }
    }

    private func update(phase: String) {
        progress.phase = phase
        report(progress)
    }
}
