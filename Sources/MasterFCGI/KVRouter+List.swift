import Foundation
import KVCommon

/// `GET /kv?prefix=p&limit=N&after=k[&keys_only=1]`: committed keys with the prefix, in byte order, at most
/// `limit` (default 100, at most `limits.list_limit_max`) per page. When `more` is true, pass `next` as `after`
/// for the following page. Served by one replica, linearizably: keys in range that are locked by an undecided
/// transaction are waited for, like a `GET`.
extension KVRouter {
    func list(_ request: HTTPRequest) -> HTTPResponse {
        let query = request.queryBytes ?? [:]
        guard query["prefix"] != nil || query["after"] != nil || query["limit"] != nil else {
            return json(400, false, "GET /kv lists keys: give ?prefix= (may be empty), &limit=, &after=", seq: nil)
        }
        let prefix = query["prefix"] ?? []
        if let denied = permit(.list(prefix: prefix)) { return denied }
        let after = query["after"] ?? []
        let limit = Int(request.query("limit") ?? "100") ?? -1
        guard (1...limits.listLimitMax).contains(limit) else {
            return json(400, false, "limit must be 1-\(limits.listLimitMax) (limits.list_limit_max)", seq: nil)
        }
        let keysOnly = ["1", "true", "yes"].contains(request.query("keys_only") ?? "")
        let reply: WireReply
        switch reads.read(WireRequest(seq: UInt64(limit), command: .list, key: prefix, value: after), in: view) {
        case .answered(let answer): reply = answer
        case .unavailable(let reasons): return unavailable(reasons)
        }
        guard let page = reply.page else { return json(503, false, "listing failed: \(reply.message)", seq: nil) }
        var writer = JSONWriter(capacity: 256 + page.entries.reduce(0) { $0 + $1.key.count + $1.value.count } * 2)
        writer.field("status", true)
        writer.field("message", "\(page.entries.count) keys" + (page.done ? "" : "; more after 'next'"))
        writer.field("seq", nil)
        writer.field("server", reply.server)
        writer.field("kvs", rawJSON: JSONWriter.array(page.entries.map { entry in
            var inner = JSONWriter(capacity: entry.key.count + entry.value.count + 64)
            KVRouter.field("key", entry.key, to: &inner)
            if !keysOnly { KVRouter.field("value", entry.value, to: &inner) }
            inner.field("version", entry.version)
            inner.field("created", entry.created)
            return inner.finish()
        }))
        writer.field("more", !page.done)
        if !page.done, let last = page.entries.last { KVRouter.field("next", last.key, to: &writer) }
        return HTTPResponse(status: 200, body: writer.finish())
    }
}
