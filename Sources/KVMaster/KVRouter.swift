import Foundation
import KVCommon

/// The HTTP API: maps requests to `MasterNode` writes and `ReplicaReads` reads, and results to status codes and
/// JSON bodies.
///
/// | request                      | answer                                                                  |
/// |------------------------------|-------------------------------------------------------------------------|
/// | GET /kv/{key}                | 200 value (+ `ETag`, `?raw` for the bytes), 404 absent, 503             |
/// | PUT /kv/{key}                | 200 committed, 409 conflict, 412 `If-Match` failed, 503, 413            |
/// | DELETE /kv/{key}             | 200 committed, 404 absent, 409, 412, 503                                |
/// | POST /kv                     | body `get;key`, `put;key;value` or `del;key`: same answers as above     |
/// | GET /kv?prefix=p&limit=&after= | committed keys with the prefix in byte order, paged                   |
/// | POST /txn                    | compares + success/failure branches, atomic on every replica            |
/// | POST /lease, /lease/{id}/keepalive, GET/DELETE /lease/{id}, PUT /kv/{key}?lease= | leases (`+Lease`) |
/// | GET /kv/{key}?index=N&wait=  | blocking read: answers once the key changed after index N, or at `wait` |
/// | GET /watch?prefix=p / ?key=k | Server-Sent Events, one per change; resumable (`Last-Event-ID`, `from`) |
/// | GET /status[?verify=1]       | master and per-replica state                                            |
/// | GET /ping                    | 200 without touching replicas (a ceiling for benchmarks)                |
/// | POST /admin/reload           | re-read cluster.yaml: 200 in force, 400 rejected (old one stays)        |
/// | POST /admin/repair           | resync replicas that differ from the majority: 200, 409 no majority     |
///
/// With `security.tokens_file`, every request but `/ping` needs `Authorization: Bearer <token>`: 401 without a
/// known one, 403 outside its role (`KVRouter+Access`).
///
/// A router is made per request, taking the configuration and the tokens in force at that moment.
struct KVRouter {
    let node: MasterNode
    let reads: ReplicaReads
    let leases: LeaseKeeper
    let view: MasterView
    let tokens: AccessTokens?
    /// The token the request proved (nil while tokens are off).
    var caller: AccessToken?
    /// The `index=` a blocking query waited from (nil for any other request).
    var waitedFrom: UInt64?

    init(node: MasterNode, reads: ReplicaReads, leases: LeaseKeeper) {
        self.node = node
        self.reads = reads
        self.leases = leases
        (view, tokens) = node.viewAndTokens
    }

    var serverID: String { view.config.master.id }
    var limits: ClusterConfig.Limits { view.config.limits }

    func handle(_ request: HTTPRequest) -> FastCGIServer.Reply {
        if request.rawPath == "/ping" {
            guard request.method == "GET" || request.method == "HEAD" else { return .response(methodNotAllowed("GET")) }
            return .response(json(200, true, "pong", seq: nil))
        }
        var router = self
        if let refusal = authenticate(request, as: &router.caller) { return .response(refusal) }
        guard request.queryBytes != nil else { return .response(router.route(request)) }
        if let waiting = router.watchRoute(request) { return waiting }
        return .response(router.route(request))
    }

    func route(_ request: HTTPRequest) -> HTTPResponse {
        let path = request.rawPath
        guard request.queryBytes != nil else {
            return json(400, false, "malformed percent-encoding in the query string (a '%' must be followed by two "
                + "hex digits)", seq: nil)
        }
        switch path {
        case "/admin/reload":
            guard request.method == "POST" else { return methodNotAllowed("POST") }
            if let denied = permit(.admin) { return denied }
            let report = node.reload()
            return json(report.ok ? 200 : 400, report.ok, report.message, seq: nil)
        case "/admin/repair":
            guard request.method == "POST" else { return methodNotAllowed("POST") }
            if let denied = permit(.admin) { return denied }
            return ReplicaRepair(node: node).response(serverID: view.config.master.id)
        case "/status":
            guard request.method == "GET" else { return methodNotAllowed("GET") }
            let verify = ["1", "true", "yes"].contains(request.query("verify") ?? "")
            if let denied = permit(verify ? .admin : .status) { return denied }
            return StatusReport(node: node, view: view, verify: verify).response()
        case "/txn":
            guard request.method == "POST" else { return methodNotAllowed("POST") }
            return transaction(request)
        case "/kv":
            switch request.method {
            case "POST": return command(request)
            case "GET": return indexed(.prefix(request.queryBytes?["prefix"] ?? [])) { list(request) }
            default: return methodNotAllowed("GET, POST")
            }
        default:
            break
        }
        if path == "/lease" || path.hasPrefix("/lease/") { return leaseRoute(request) }
        guard path.hasPrefix("/kv/") else {
            return json(404, false, "no such endpoint: \(path) (try /kv/{key}, /kv?prefix=, /txn, /lease, /status)",
                        seq: nil)
        }
        guard case .success(let key) = PercentCoding.decode(Array(path.utf8.dropFirst(4))[...]) else {
            return json(400, false, "malformed percent-encoding in the key", seq: nil)
        }
        if let problem = checkKey(key) { return problem }
        switch request.method {
        case "GET", "HEAD": return permit(.read(key: key)) ?? indexed(.key(key)) { read(key, request) }
        case "PUT", "DELETE": return permit(.write(key: key)) ?? keyWrite(key, request)
        default: return methodNotAllowed("GET, PUT, DELETE")
        }
    }

    // MARK: - Validation and answers shared by the handlers

    func checkKey(_ key: [UInt8]) -> HTTPResponse? {
        if key.isEmpty { return json(400, false, "the key must not be empty", seq: nil) }
        if let reserved = checkPrefix(key) { return reserved }
        if key.count > limits.keyBytesMax {
            return json(413, false, "key is \(key.count) bytes; the limit is \(limits.keyBytesMax) (limits.key_bytes_max)",
                        seq: nil)
        }
        return nil
    }

    /// A key or prefix inside the leases' reserved keys names nothing a client may see.
    func checkPrefix(_ prefix: [UInt8]) -> HTTPResponse? {
        guard LeaseKeys.isReserved(prefix) else { return nil }
        return json(400, false, "keys starting with \\xFFkv/ are reserved (they hold the leases)", seq: nil)
    }

    func valueTooLarge() -> HTTPResponse {
        json(413, false, "value larger than \(limits.valueBytesMax) bytes (limits.value_bytes_max); nothing was written",
             seq: nil)
    }

    func methodNotAllowed(_ allowed: String) -> HTTPResponse {
        var response = json(405, false, "method not allowed here; use \(allowed)", seq: nil)
        response.headers.append(("Allow", allowed))
        return response
    }

    /// The answer to a write: its outcome, or 503 when the master could not start it.
    func answer(_ answer: TransactionManager.WriteAnswer, op: WriteOp?) -> HTTPResponse {
        switch answer {
        case .outcome(let outcome): return WriteReport(outcome: outcome, op: op).response(serverID: serverID)
        case .refused(let reason): return json(503, false, "\(reason); nothing was written, retry later", seq: nil)
        }
    }

    func unavailable(_ reasons: [String]) -> HTTPResponse {
        json(503, false, "no replica could answer the read (\(reasons.joined(separator: "; "))); retry later", seq: nil)
    }

    func json(_ status: Int, _ ok: Bool, _ message: String, seq: UInt64?, server: String? = nil) -> HTTPResponse {
        var writer = JSONWriter()
        writer.field("status", ok)
        writer.field("message", message)
        writer.field("seq", seq)
        writer.field("server", server ?? serverID)
        return HTTPResponse(status: status, body: writer.finish())
    }

    /// Adds `"<name>":"text"` if `bytes` is UTF-8, else `"<name>_base64":"..."`.
    static func field(_ name: String, _ bytes: [UInt8], to writer: inout JSONWriter) {
        if let text = String(validating: bytes, as: UTF8.self) {
            writer.field(name, text)
        } else {
            writer.field(name + "_base64", Data(bytes).base64EncodedString())
        }
    }
}
