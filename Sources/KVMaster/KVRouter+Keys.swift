import Foundation
import KVCommon

/// Single-key requests: `GET`, `PUT`, `DELETE /kv/{key}` (with `If-Match`/`?cas=` compare-and-swap) and the
/// user's command syntax on `POST /kv`.
extension KVRouter {
    /// `GET /kv/{key}`: JSON with value, `seq` (version) and `created`, an `ETag` of the version; with `?raw`
    /// or `Accept: application/octet-stream`, the value's bytes alone.
    func read(_ key: [UInt8], _ request: HTTPRequest) -> HTTPResponse {
        let reply: WireReply
        switch reads.read(.get(key), in: view) {
        case .answered(let answer): reply = answer
        case .unavailable(let reasons): return unavailable(reasons)
        }
        guard reply.status, let value = reply.value else {
            return json(404, false, "key not found", seq: nil, server: reply.server)
        }
        let etag = ("ETag", "\"\(reply.seq ?? 0)\"")
        let raw = request.queryBytes?["raw"] != nil || (request.headers["HTTP_ACCEPT"] ?? "").contains("application/octet-stream")
        if raw {
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream"), etag,
                                                       ("X-Kv-Server", reply.server)], body: value)
        }
        var writer = JSONWriter(capacity: value.count + 128)
        writer.field("status", true)
        if let text = String(validating: value, as: UTF8.self) {
            writer.field("message", text)
        } else {
            writer.field("message", Data(value).base64EncodedString())
            writer.field("encoding", "base64")
        }
        writer.field("seq", reply.seq)
        writer.field("server", reply.server)
        writer.field("created", reply.created ?? reply.seq)
        return HTTPResponse(status: 200, headers: [etag], body: writer.finish())
    }

    /// `PUT`/`DELETE /kv/{key}`, plain or compare-and-swap (`If-Match: <seq>` or `?cas=<seq>`; 0 = absent).
    func keyWrite(_ key: [UInt8], _ request: HTTPRequest) -> HTTPResponse {
        let op: WriteOp
        if request.method == "PUT" {
            if request.bodyTooLarge || request.body.count > limits.valueBytesMax { return valueTooLarge() }
            op = .put(key: key, value: request.body)
        } else {
            op = .delete(key: key)
        }
        let expected: UInt64?
        switch expectedVersion(request, key: key) {
        case .success(let version): expected = version
        case .failure(let refusal): return refusal.response
        }
        if let lease = request.query("lease") {
            guard case .put(_, let value) = op else {
                return json(400, false, "?lease= attaches a key on PUT; a DELETE takes none (revoke the lease, or "
                    + "delete the key)", seq: nil)
            }
            return attach(key, value: value, leaseText: lease, expected: expected)
        }
        guard let expected else { return write(op) }
        return compareAndSwap(op, expected: expected)
    }

    /// Carries a ready answer out of a helper that returns a `Result`.
    struct Refusal: Error {
        let response: HTTPResponse
    }

    /// The version a write expects (`If-Match: <seq>` or `?cas=<seq>`; 0 = absent), nil for an unconditional one.
    func expectedVersion(_ request: HTTPRequest, key: [UInt8]) -> Result<UInt64?, Refusal> {
        guard let expectedText = request.query("cas") ?? request.headers["HTTP_IF_MATCH"] else { return .success(nil) }
        var tag = expectedText.trimmingCharacters(in: .whitespaces)
        // If-Match compares strongly (RFC 9110, 13.1.1): a weak tag never matches, whatever the version.
        if tag.hasPrefix("W/") { return .failure(Refusal(response: weakTagNeverMatches(key))) }
        if tag.count >= 2, tag.hasPrefix("\""), tag.hasSuffix("\"") { tag = String(tag.dropFirst().dropLast()) }
        guard let expected = UInt64(tag) else {
            return .failure(Refusal(response: json(400, false, "If-Match / cas must be a version (the seq from GET or "
                + "ETag); 0 means absent", seq: nil)))
        }
        return .success(expected)
    }

    /// Runs `op` only if the key's version is `expected`, checked at the replicas inside the prepare.
    private func compareAndSwap(_ op: WriteOp, expected: UInt64) -> HTTPResponse {
        let write: TxnSpec.Op
        switch op {
        case .put(let key, let value): write = .put(key: key, value: value)
        case .delete(let key): write = .delete(key: key)
        }
        let spec = TxnSpec(compare: [TxnSpec.Compare(key: op.key, target: .version, number: expected)],
                           success: [write], failure: [.get(key: op.key)])
        let result = node.write(WriteRequest.txn(spec).intent)
        guard case .outcome(let outcome) = result, outcome.committed, let txn = outcome.txn, !txn.succeeded else {
            return answer(result, op: op)
        }
        return versionMismatch(expected: expected, current: txn.reads.first?.entry, seq: outcome.seq)
    }

    /// 412: the key is not at the version the write expected; nothing was written.
    func versionMismatch(expected: UInt64, current: Participant.Entry?, seq: UInt64) -> HTTPResponse {
        var writer = JSONWriter()
        writer.field("status", false)
        writer.field("message", "version mismatch: expected \(expected), the key is at "
            + (current.map { "version \($0.version)" } ?? "version 0 (absent)") + "; nothing was written")
        writer.field("seq", seq)
        writer.field("server", serverID)
        writer.field("current_version", current?.version ?? 0)
        return HTTPResponse(status: 412, headers: [("ETag", "\"\(current?.version ?? 0)\"")], body: writer.finish())
    }

    /// 412 for `If-Match: W/"..."`, with the key's current version, and nothing written.
    private func weakTagNeverMatches(_ key: [UInt8]) -> HTTPResponse {
        let current: UInt64
        switch reads.read(.get(key), in: view) {
        case .answered(let reply): current = reply.status ? reply.seq ?? 0 : 0
        case .unavailable(let reasons): return unavailable(reasons)
        }
        var writer = JSONWriter()
        writer.field("status", false)
        writer.field("message", "If-Match holds a weak entity tag, which never matches (If-Match compares strongly); "
            + "the key is at version \(current); send If-Match: \"\(current)\" to write it; nothing was written")
        writer.field("seq", nil)
        writer.field("server", serverID)
        writer.field("current_version", current)
        return HTTPResponse(status: 412, headers: [("ETag", "\"\(current)\"")], body: writer.finish())
    }

    func write(_ op: WriteOp) -> HTTPResponse {
        answer(node.write(WriteRequest.single(op).intent), op: op)
    }

    /// `POST /kv` with the user's command syntax: `get;key`, `put;key;value`, `del;key`. The key is
    /// percent-decoded; a put's value is everything after the second `;`, byte for byte.
    func command(_ request: HTTPRequest) -> HTTPResponse {
        if request.bodyTooLarge { return valueTooLarge() }
        var body = request.body[...]
        if body.last == UInt8(ascii: "\n") { body = body.dropLast() }
        if body.last == 0x0D { body = body.dropLast() }
        let parts = body.split(separator: UInt8(ascii: ";"), maxSplits: 2, omittingEmptySubsequences: false)
        let verb = String(decoding: parts.first ?? [], as: UTF8.self)
        let usage = "expected 'get;key', 'put;key;value' or 'del;key'"
        guard parts.count >= 2 else { return json(400, false, "malformed command: \(usage)", seq: nil) }
        guard case .success(let key) = PercentCoding.decode(parts[1]) else {
            return json(400, false, "malformed percent-encoding in the key", seq: nil)
        }
        if let problem = checkKey(key) { return problem }
        switch (verb, parts.count) {
        case ("get", 2): return permit(.read(key: key)) ?? read(key, request)
        case ("del", 2): return permit(.write(key: key)) ?? write(.delete(key: key))
        case ("put", 3):
            if let denied = permit(.write(key: key)) { return denied }
            if parts[2].count > limits.valueBytesMax { return valueTooLarge() }
            return write(.put(key: key, value: Array(parts[2])))
        default: return json(400, false, "malformed command '\(verb)': \(usage)", seq: nil)
        }
    }
}
