import Foundation
import KVCommon

/// Bearer tokens (`AccessTokens`, `security.tokens_file`): every request but `/ping` names a token; each handler
/// asks `permit` before it reads or writes. Without a tokens file the API is open, as on the loopback dev cluster.
extension KVRouter {
    /// Sets `caller` to the request's token and returns nil, or returns the 401 answer. Nothing to check (and
    /// `caller` stays nil) when tokens are off.
    func authenticate(_ request: HTTPRequest, as caller: inout AccessToken?) -> HTTPResponse? {
        guard let tokens else { return nil }
        switch tokens.authenticate(request.headers["HTTP_AUTHORIZATION"]) {
        case .success(let token):
            caller = token
            return nil
        case .failure(let failure):
            let reason: String
            switch failure {
            case .missing: reason = "this API needs a token: send 'Authorization: Bearer <token>'"
            case .malformed: reason = "the Authorization header must be 'Bearer <token>'"
            case .unknown: reason = "the token is not known (revoked, or mistyped)"
            }
            var response = json(401, false, reason + " (see docs/OPERATIONS.md, Security)", seq: nil)
            response.headers.append(("WWW-Authenticate", "Bearer realm=\"kv\""))
            return response
        }
    }

    /// nil when the caller may do `action`; else the 403 answer, naming the token and what it lacks.
    func permit(_ action: AccessToken.Action) -> HTTPResponse? {
        guard let caller, !caller.allows(action) else { return nil }
        let what: String
        switch action {
        case .read(let key): what = "read key '\(String(decoding: key, as: UTF8.self))'"
        case .write(let key): what = "write key '\(String(decoding: key, as: UTF8.self))'"
        case .list(let prefix): what = "list keys with prefix '\(String(decoding: prefix, as: UTF8.self))'"
        case .status: what = "read the status"
        case .lease: what = "grant, keep alive or revoke leases"
        case .admin: what = "use the admin endpoints (/admin/*, /status?verify=1)"
        }
        let scope = caller.prefixes.isEmpty ? "every key"
            : "keys under " + caller.prefixes.map { "'\(String(decoding: $0, as: UTF8.self))'" }.joined(separator: ", ")
        return json(403, false, "token \(caller.name) (\(caller.role.rawValue), \(scope)) may not \(what)", seq: nil)
    }

    /// Every key a transaction reads (compares, gets) and writes, checked against the caller's token.
    func permit(_ spec: TxnSpec) -> HTTPResponse? {
        for compare in spec.compare {
            if let denied = permit(.read(key: compare.key)) { return denied }
        }
        for op in spec.success + spec.failure {
            switch op {
            case .get(let key): if let denied = permit(.read(key: key)) { return denied }
            case .put(let key, _), .delete(let key): if let denied = permit(.write(key: key)) { return denied }
            }
        }
        return nil
    }
}
