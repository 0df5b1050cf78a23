import Foundation
import KVCommon

/// The HTTP API: maps requests to `KVService` calls and results to status codes and JSON bodies.
///
/// | request              | answer                                                                  |
/// |----------------------|-------------------------------------------------------------------------|
/// | GET /kv/{key}        | 200 value, 404 absent, 503 no replica answered                          |
/// | PUT /kv/{key}        | 200 committed, 409 conflict, 503 replica unreachable, 413 too large     |
/// | DELETE /kv/{key}     | 200 committed, 404 absent, 409, 503                                     |
/// | POST /kv             | body `get;key`, `put;key;value` or `del;key`: same answers as above     |
/// | GET /status          | master and per-replica state                                            |
/// | GET /ping            | 200 without touching replicas (a ceiling for benchmarks)                |
/// | POST /admin/reload   | re-read cluster.yaml: 200 in force, 400 rejected (old one stays)        |
///
/// A router is made per request (`KVRouter(service:)`), taking the configuration in force at that moment.
struct KVRouter {
    let service: KVService

    let view: ClusterView

    init(service: KVService) {
        self.service = service
        view = service.views.current
    }

    private var serverID: String { view.config.master.id }
    private var limits: ClusterConfig.Limits { view.config.limits }

    func handle(_ request: HTTPRequest) -> HTTPResponse {
        let path = request.rawPath
        if path == "/ping" {
            guard request.method == "GET" || request.method == "HEAD" else { return methodNotAllowed("GET") }
            return json(200, true, "pong", seq: nil)
        }
        if path == "/admin/reload" {
            guard request.method == "POST" else { return methodNotAllowed("POST") }
            let report = service.views.reload()
            return json(report.ok ? 200 : 400, report.ok, report.message, seq: nil)
        }
        if path == "/status" {
            guard request.method == "GET" else { return methodNotAllowed("GET") }
            let verify = ["1", "true", "yes"].contains(request.query["verify"] ?? "")
            return StatusReport(service: service, verify: verify).response()
        }
        if path == "/kv" {
            guard request.method == "POST" else { return methodNotAllowed("POST") }
            return command(request)
        }
        guard path.hasPrefix("/kv/") else {
            return json(404, false, "no such endpoint: \(path) (try /kv/{key}, /status)", seq: nil)
        }
        guard let key = URLPercent.decode(path.dropFirst(4)) else {
            return json(400, false, "malformed percent-encoding in the key", seq: nil)
        }
        if let problem = checkKey(key) { return problem }
        switch request.method {
        case "GET", "HEAD": return read(key)
        case "PUT":
            if request.bodyTooLarge || request.body.count > limits.valueBytesMax { return valueTooLarge() }
            return write(.put(key: key, value: request.body))
        case "DELETE": return write(.delete(key: key))
        default: return methodNotAllowed("GET, PUT, DELETE")
        }
    }

    // MARK: - Operations

    private func read(_ key: [UInt8]) -> HTTPResponse {
        switch service.read(key, in: view) {
        case .found(let value, let seq, let server):
            var writer = JSONWriter(capacity: value.count + 96)
            writer.field("status", true)
            if let text = String(validating: value, as: UTF8.self) {
                writer.field("message", text)
            } else {
                writer.field("message", Data(value).base64EncodedString())
                writer.field("encoding", "base64")
            }
            writer.field("seq", seq)
            writer.field("server", server)
            return HTTPResponse(status: 200, body: writer.finish())
        case .notFound(let server):
            return json(404, false, "key not found", seq: nil, server: server)
        case .unavailable(let reasons):
            return json(503, false, "no replica could answer the read (\(reasons.joined(separator: "; "))); retry later",
                        seq: nil)
        }
    }

    private func write(_ op: WriteOp) -> HTTPResponse {
        guard let outcome = service.write(op) else {
            let reason = view.participants.isEmpty ? "no replica is in sync to take writes"
                : "too many transactions in flight (limit \(limits.inFlightTransactionsMax)) or a replica is joining"
            return json(503, false, "\(reason); nothing was written, retry later", seq: nil)
        }
        let report = WriteReport(outcome: outcome, op: op)
        var writer = JSONWriter()
        writer.field("status", outcome.committed)
        writer.field("message", report.message)
        writer.field("seq", outcome.seq)
        writer.field("server", serverID)
        writer.field("replicas", rawJSON: report.replicasJSON())
        return HTTPResponse(status: report.httpStatus, body: writer.finish())
    }

    /// `POST /kv` with the user's command syntax: `get;key`, `put;key;value`, `del;key`. The key is
    /// percent-decoded; a put's value is everything after the second `;`, byte for byte.
    private func command(_ request: HTTPRequest) -> HTTPResponse {
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
        case ("get", 2): return read(key)
        case ("del", 2): return write(.delete(key: key))
        case ("put", 3):
            if parts[2].count > limits.valueBytesMax { return valueTooLarge() }
            return write(.put(key: key, value: Array(parts[2])))
        default: return json(400, false, "malformed command '\(verb)': \(usage)", seq: nil)
        }
    }

    // MARK: - Validation and helpers

    private func checkKey(_ key: [UInt8]) -> HTTPResponse? {
        if key.isEmpty { return json(400, false, "the key must not be empty", seq: nil) }
        if key.count > limits.keyBytesMax {
            return json(413, false, "key is \(key.count) bytes; the limit is \(limits.keyBytesMax) (limits.key_bytes_max)",
                        seq: nil)
        }
        return nil
    }

    private func valueTooLarge() -> HTTPResponse {
        json(413, false, "value larger than \(limits.valueBytesMax) bytes (limits.value_bytes_max); nothing was written",
             seq: nil)
    }

    private func methodNotAllowed(_ allowed: String) -> HTTPResponse {
        var response = json(405, false, "method not allowed here; use \(allowed)", seq: nil)
        response.headers.append(("Allow", allowed))
        return response
    }

    private func json(_ status: Int, _ ok: Bool, _ message: String, seq: UInt64?, server: String? = nil) -> HTTPResponse {
        var writer = JSONWriter()
        writer.field("status", ok)
        writer.field("message", message)
        writer.field("seq", seq)
        writer.field("server", server ?? serverID)
        return HTTPResponse(status: status, body: writer.finish())
    }
}
