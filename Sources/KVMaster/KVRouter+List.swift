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
        if let problem = checkPrefix(prefix) ?? permit(.list(prefix: prefix)) { return problem }
        let after = query["after"] ?? []
        let limit = Int(request.query("limit") ?? "100") ?? -1
        guard (1...limits.listLimitMax).contains(limit) else {
            return json(400, false, "limit must be 1-\(limits.listLimitMax) (limits.list_limit_max)", seq: nil)
        }
        let keysOnly = ["1", "true", "yes"].contains(request.query("keys_only") ?? "")
        // One entry more than asked, so that a page ending where only leases' own keys follow says it is the
        // last. Those keys sort last (0xFF) and are never shown: a page that reaches them goes on past them.
        var reply: WireReply
        switch reads.read(WireRequest(seq: UInt64(limit + 1), command: .list, key: prefix, value: after), in: view) {
        case .answered(let answer): reply = answer
        case .unavailable(let reasons): return unavailable(reasons)
        }
        guard var page = reply.page else { return json(503, false, "listing failed: \(reply.message)", seq: nil) }
        if page.entries.contains(where: { LeaseKeys.isReserved($0.key) }) {
            page.entries.removeAll { LeaseKeys.isReserved($0.key) }
            if !page.done {
                let past = LeaseKeys.reserved + [0xFF]
                let rest = WireRequest(seq: UInt64(limit + 1 - page.entries.count), command: .list, key: prefix,
                                       value: past)
                switch reads.read(rest, in: view) {
                case .answered(let answer):
                    guard let more = answer.page else { return json(503, false, "listing failed: \(answer.message)", seq: nil) }
                    page.entries += more.entries.filter { !LeaseKeys.isReserved($0.key) }
                    page.done = more.done
                    reply = answer
                case .unavailable(let reasons): return unavailable(reasons)
                }
            }
        }
        if page.entries.count > limit {
            page.entries.removeLast(page.entries.count - limit)
            page.done = false
        }
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
