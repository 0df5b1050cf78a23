import KVCommon

/// Turns a transaction's outcome into the client's answer: HTTP status, a one-sentence message that says
/// what happened and whether a retry is safe, and each replica's vote.
struct WriteReport {
    let outcome: Coordinator.Outcome
    /// What was written, for the message (`nil` for a transaction).
    let op: WriteOp?
    /// Replaces the message of a committed write (transactions say which branch ran).
    var summary: String?

    init(outcome: Coordinator.Outcome, op: WriteOp?) {
        self.outcome = outcome
        self.op = op
    }

    var httpStatus: Int {
        guard !outcome.committed else { return 200 }
        switch outcome.failure ?? .aborted {
        case .unavailable: return 503
        case .conflict, .aborted: return 409
        case .notFound: return 404
        }
    }

    var message: String {
        let what: String
        switch op {
        case .put: what = "put"
        case .delete: what = "delete"
        case nil: what = "transaction"
        }
        let seq = outcome.seq
        if outcome.committed {
            if outcome.pendingCommit.isEmpty {
                return "\(what) committed (seq \(seq)): all \(outcome.replicas.count) replicas voted yes and the "
                    + "decision is durable"
            }
            return "\(what) committed (seq \(seq)); \(outcome.pendingCommit.joined(separator: ", ")) not acknowledged "
                + "yet and will receive the commit when reachable; do not retry"
        }
        let failing = outcome.replicas.filter { !$0.status }
        let culprit = failing.first(where: { $0.code != .ok }) ?? failing.first
        let detail = culprit.map { "\($0.server): \($0.message)" } ?? "aborted"
        switch outcome.failure ?? .aborted {
        case .unavailable:
            let names = failing.map(\.server).joined(separator: ", ")
            return "\(what) aborted (seq \(seq)): replica \(names) unavailable (\(detail)); nothing was written, retrying is safe"
        case .conflict where culprit?.code == .superseded:
            return "\(what) aborted (seq \(seq)): a later write to the key committed first (\(detail)); "
                + "nothing was written, retrying is safe"
        case .conflict:
            return "\(what) aborted (seq \(seq)): a concurrent transaction holds the key (\(detail)); "
                + "nothing was written, retrying is safe"
        case .notFound:
            return "key not found (\(detail)); nothing was deleted"
        case .aborted:
            return "\(what) aborted (seq \(seq)): \(detail); nothing was written, retrying is safe"
        }
    }

    /// The whole answer: status, message, seq, server, and each replica's vote.
    func response(serverID: String, extra: ((inout JSONWriter) -> Void)? = nil) -> HTTPResponse {
        var writer = JSONWriter()
        writer.field("status", outcome.committed)
        writer.field("message", summary ?? message)
        writer.field("seq", outcome.seq)
        writer.field("server", serverID)
        // The change index of a commit: watchers see this write at it, and `?index=` waits for what follows it.
        if outcome.committed { writer.field("index", outcome.index) }
        extra?(&writer)
        if !outcome.ejected.isEmpty {
            // Not written to these: they are out of the in-sync set and get it by their resync.
            writer.field("ejected", rawJSON: JSONWriter.array(strings: outcome.ejected))
        }
        writer.field("replicas", rawJSON: replicasJSON())
        let headers = outcome.committed ? [("X-Kv-Index", String(outcome.index))] : []
        return HTTPResponse(status: httpStatus, headers: headers, body: writer.finish())
    }

    func replicasJSON() -> [UInt8] {
        JSONWriter.array(outcome.replicas.map { report in
            var writer = JSONWriter(capacity: 96)
            writer.field("server", report.server)
            writer.field("status", report.status)
            writer.field("message", report.message)
            return writer.finish()
        })
    }
}
