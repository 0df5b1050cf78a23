import Foundation
import KVCommon

/// Leases, as etcd has them: `POST /lease {"ttl_s":10}` grants one, `POST /lease/{id}/keepalive` restarts its
/// TTL, `GET /lease/{id}` tells the time left and the keys attached, `DELETE /lease/{id}` revokes it, `GET /lease`
/// lists them, and `PUT /kv/{key}?lease={id}` attaches a key. When a lease expires or is revoked its keys are
/// deleted in one transaction on every replica (`LeaseTable`, `LeaseKeeper`).
extension KVRouter {
    func leaseRoute(_ request: HTTPRequest) -> HTTPResponse {
        let parts = request.rawPath.split(separator: "/", omittingEmptySubsequences: false).dropFirst(2)
        if parts.isEmpty {
            switch request.method {
            case "POST": return permit(.lease) ?? grant(request)
            case "GET": return permit(.status) ?? leaseList()
            default: return methodNotAllowed("GET, POST")
            }
        }
        guard let id = LeaseKeys.number(parts.first!.utf8), (1...LeaseKeys.idMax).contains(id) else {
            return json(400, false, "a lease id is a decimal number from 1 to \(LeaseKeys.idMax)", seq: nil)
        }
        if parts.count == 2, parts.last == "keepalive" {
            guard request.method == "POST" else { return methodNotAllowed("POST") }
            return permit(.lease) ?? keepAlive(id)
        }
        guard parts.count == 1 else {
            return json(404, false, "no such endpoint: \(request.rawPath) (try /lease/{id} or /lease/{id}/keepalive)",
                        seq: nil)
        }
        switch request.method {
        case "GET": return permit(.status) ?? leaseInfo(id)
        case "DELETE": return permit(.lease) ?? revoke(id)
        default: return methodNotAllowed("GET, DELETE")
        }
    }

    private var notLoaded: HTTPResponse {
        json(503, false, "the master has not read the leases from the replicas yet (it does once one answers after "
            + "start-up); retry shortly", seq: nil)
    }

    private func leaseNotFound(_ id: UInt64, _ after: String = "") -> HTTPResponse {
        json(404, false, "lease \(id) not found: it expired, was revoked, or never existed" + after, seq: nil)
    }

    private func grant(_ request: HTTPRequest) -> HTTPResponse {
        let settings = view.config.leases
        guard case .success(let body) = JSONValue.parse(request.body), case .object(let fields) = body,
              case .number(let ttlText)? = fields["ttl_s"], let ttl = UInt64(ttlText),
              (1...UInt64(settings.ttlMaxS)).contains(ttl) else {
            return json(400, false, "expected a JSON body {\"ttl_s\": N} with N whole seconds from 1 to "
                + "\(settings.ttlMaxS) (leases.ttl_max_s), optionally \"id\"", seq: nil)
        }
        var chosen: UInt64?
        if let idField = fields["id"] {
            guard case .number(let text) = idField, let id = UInt64(text), (1...LeaseKeys.idMax).contains(id)
            else { return json(400, false, "\"id\" must be a whole number from 1 to \(LeaseKeys.idMax)", seq: nil) }
            chosen = id
        }
        let (loaded, count) = node.leases.withTable { ($0.loaded, $0.leases.count) }
        guard loaded else { return notLoaded }
        guard count < settings.leasesMax else {
            return json(503, false, "\(count) leases are alive, the most leases.leases_max allows; revoke some or "
                + "raise it", seq: nil)
        }
        for _ in 0..<3 {
            let id = chosen ?? UInt64.random(in: 1...LeaseKeys.idMax)
            let result = node.write(WriteRequest.txn(LeaseTable.grant(id, ttlS: ttl)).intent)
            guard case .outcome(let outcome) = result, outcome.committed, let txn = outcome.txn else {
                return answer(result, op: nil)
            }
            if !txn.succeeded {
                if chosen != nil { return json(409, false, "lease \(id) exists already; nothing was written", seq: outcome.seq) }
                continue
            }
            var report = WriteReport(outcome: outcome, op: nil)
            report.summary = "lease \(id) granted with a TTL of \(ttl) s (seq \(outcome.seq))"
            return report.response(serverID: serverID) { writer in
                writer.field("id", id)
                writer.field("ttl_s", ttl)
            }
        }
        return json(503, false, "could not find a free lease id; retry", seq: nil)
    }

    private func keepAlive(_ id: UInt64) -> HTTPResponse {
        let now = LeaseBook.nowMs
        let (loaded, lease) = node.leases.withTable { ($0.loaded, $0.keepAlive(id, nowMs: now)) }
        guard loaded else { return notLoaded }
        guard let lease else { return leaseNotFound(id) }
        var writer = leaseHead(lease, "lease \(id) kept alive: \(lease.ttlS) s from now")
        return HTTPResponse(status: 200, body: writer.finish())
    }

    /// A lease answer's fields up to its id and TTL; the caller adds the rest.
    private func leaseHead(_ lease: LeaseTable.Lease, _ message: String) -> JSONWriter {
        var writer = JSONWriter()
        writer.field("status", true)
        writer.field("message", message)
        writer.field("seq", nil)
        writer.field("server", serverID)
        writer.field("id", lease.id)
        writer.field("ttl_s", lease.ttlS)
        return writer
    }

    private func leaseInfo(_ id: UInt64) -> HTTPResponse {
        let now = LeaseBook.nowMs
        let (loaded, lease) = node.leases.withTable { ($0.loaded, $0.lease(id, nowMs: now)) }
        guard loaded else { return notLoaded }
        guard let lease else { return leaseNotFound(id) }
        // Only the keys the caller may read are named.
        let keys = lease.keys.keys.filter { caller?.allows(.read(key: $0)) ?? true }
            .sorted { $0.lexicographicallyPrecedes($1) }
        var writer = leaseHead(lease, "lease \(id): \(lease.keys.count) key(s), expires in \(lease.deadlineMs - now) ms")
        writer.field("remaining_ms", UInt64(max(0, lease.deadlineMs - now)))
        writer.field("keys", rawJSON: JSONWriter.array(keys.map { key in
            var inner = JSONWriter()
            KVRouter.field("key", key, to: &inner)
            return inner.finish()
        }))
        return HTTPResponse(status: 200, body: writer.finish())
    }

    private func leaseList() -> HTTPResponse {
        let now = LeaseBook.nowMs
        let (loaded, leases) = node.leases.withTable { table in
            (table.loaded, table.leases.values.filter { table.lease($0.id, nowMs: now) != nil }.sorted { $0.id < $1.id })
        }
        guard loaded else { return notLoaded }
        var writer = JSONWriter()
        writer.field("status", true)
        writer.field("message", "\(leases.count) lease(s)")
        writer.field("seq", nil)
        writer.field("server", serverID)
        writer.field("leases", rawJSON: JSONWriter.array(leases.map { lease in
            var inner = JSONWriter()
            inner.field("id", lease.id)
            inner.field("ttl_s", lease.ttlS)
            inner.field("remaining_ms", UInt64(max(0, lease.deadlineMs - now)))
            inner.field("keys", UInt64(lease.keys.count))
            return inner.finish()
        }))
        return HTTPResponse(status: 200, body: writer.finish())
    }

    private func revoke(_ id: UInt64) -> HTTPResponse {
        let (loaded, lease) = node.leases.withTable { ($0.loaded, $0.lease(id, nowMs: LeaseBook.nowMs)) }
        guard loaded else { return notLoaded }
        guard let lease else { return leaseNotFound(id) }
        for key in lease.keys.keys {
            if let denied = permit(.write(key: key)) { return denied }
        }
        switch leases.revoke(id) {
        case .notFound: return leaseNotFound(id)
        case .failed(let result): return answer(result, op: nil)
        case .busy:
            return json(503, false, "lease \(id)'s keys kept changing while it was revoked; it is still alive, retry",
                        seq: nil)
        case .removed(let outcome, let keys):
            var report = WriteReport(outcome: outcome, op: nil)
            report.summary = "lease \(id) revoked: \(keys) key(s) deleted (seq \(outcome.seq))"
            return report.response(serverID: serverID) { writer in
                writer.field("id", id)
                writer.field("keys_deleted", UInt64(keys))
            }
        }
    }

    /// `PUT /kv/{key}?lease={id}` (with `If-Match`/`cas` too): the key and its marker in one transaction that
    /// holds only while the lease exists.
    func attach(_ key: [UInt8], value: [UInt8], leaseText: String, expected: UInt64?) -> HTTPResponse {
        guard let id = LeaseKeys.number(leaseText.utf8), (1...LeaseKeys.idMax).contains(id) else {
            return json(400, false, "lease= takes a lease id (a decimal number from POST /lease)", seq: nil)
        }
        let begun = node.leases.withTable { table in
            table.loaded ? Optional(table.beginAttach(key, to: id, nowMs: LeaseBook.nowMs)) : nil
        }
        let lease: LeaseTable.Lease
        switch begun {
        case nil: return notLoaded
        case .failure(.notFound)?: return leaseNotFound(id, "; nothing was written")
        case .failure(.full(let keys))?:
            return json(409, false, "lease \(id) holds \(keys) keys, the most one transaction can delete "
                + "(limits.txn_ops_max, txn_bytes_max); nothing was written", seq: nil)
        case .success(let found)?: lease = found
        }
        defer { node.leases.withTable { $0.attachDone(key, to: id) } }
        var spec = LeaseTable.attach(key, value: value, to: lease)
        if let expected {
            spec.compare.append(TxnSpec.Compare(key: key, target: .version, number: expected))
            spec.failure = [.get(key: LeaseKeys.record(id)), .get(key: key)]
        }
        var intent = WriteRequest.txn(spec).intent
        intent.lease = id
        let result = node.write(intent)
        let op = WriteOp.put(key: key, value: value)
        guard case .outcome(let outcome) = result, outcome.committed, let txn = outcome.txn else {
            return answer(result, op: op)
        }
        guard txn.succeeded else {
            if let expected, txn.reads.first?.entry != nil {
                return versionMismatch(expected: expected, current: txn.reads.last?.entry, seq: outcome.seq)
            }
            return leaseNotFound(id, "; nothing was written")
        }
        return WriteReport(outcome: outcome, op: op).response(serverID: serverID) { writer in
            writer.field("lease", id)
        }
    }
}
