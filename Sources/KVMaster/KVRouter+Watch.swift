import Foundation
import KVCommon

/// Waiting for changes (`WatchHub`): blocking reads, as Consul's blocking queries, and Server-Sent Event streams.
///
/// - `GET /kv/{key}?index=N&wait=30s`, `GET /kv?prefix=p&index=N&wait=30s`: the read, answered at once if
///   something in scope changed after index N, else when something does or when `wait` runs out (capped at
///   `watch.wait_max_ms`; default 5 minutes); `X-Kv-Index` is the index to pass next.
/// - `GET /watch?prefix=p` or `?key=k`, resumable with `Last-Event-ID: N` or `&from=N` (changes after N):
///   `text/event-stream` with one event per change (`WatchEvents`).
extension KVRouter {
    /// The answer for a request that may wait; nil when the request is not one (or needs no waiting).
    func watchRoute(_ request: HTTPRequest) -> FastCGIServer.Reply? {
        let path = request.rawPath
        if path == "/watch" { return stream(request) }
        guard request.method == "GET", request.queryBytes?["index"] != nil else { return nil }
        let scope: ChangeHistory.Scope
        if path == "/kv" {
            guard let prefix = request.queryBytes?["prefix"] else { return nil }
            if let problem = checkPrefix(prefix) ?? permit(.list(prefix: prefix)) { return .response(problem) }
            scope = .prefix(prefix)
        } else if path.hasPrefix("/kv/"), case .success(let key) = PercentCoding.decode(Array(path.utf8.dropFirst(4))[...]) {
            if let problem = checkKey(key) ?? permit(.read(key: key)) { return .response(problem) }
            scope = .key(key)
        } else {
            return nil
        }
        guard let index = UInt64(request.query("index") ?? "") else {
            return .response(json(400, false, "index must be a change index (the X-Kv-Index of an earlier answer)",
                                  seq: nil))
        }
        let waitMax = node.watch.settings.waitMaxMs
        guard let asked = Self.durationMs(request.query("wait") ?? "5m") else {
            return .response(json(400, false, "wait must be a duration such as 30s, 500ms or 5m", seq: nil))
        }
        let hub = node.watch
        var router = self
        router.waitedFrom = index
        guard !hub.changed(in: scope, after: index) else { return .response(router.route(request)) }
        guard hub.watchers < hub.settings.watchersMax else { return .response(watchersFull()) }
        let answer = { [router] in router.route(request) }
        return .park { [router] parked in
            hub.park(scope, after: index, waitMs: min(asked, waitMax), request: parked, answer: answer,
                     full: { router.watchersFull() })
        }
    }

    /// Runs `read` with the index taken before it as `X-Kv-Index`: the newest published one, or for a blocking
    /// query the newest change in scope, at least the index it waited from (a time-out gives back that index).
    func indexed(_ scope: ChangeHistory.Scope, _ read: () -> HTTPResponse) -> HTTPResponse {
        let index = waitedFrom.map { max($0, node.watch.index(in: scope)) } ?? node.watch.lastIndex
        var response = read()
        response.headers.append(("X-Kv-Index", String(index)))
        return response
    }

    /// `GET /watch`: a stream, parked; what the hub refuses is answered on the parked request.
    private func stream(_ request: HTTPRequest) -> FastCGIServer.Reply {
        guard request.method == "GET" else { return .response(methodNotAllowed("GET")) }
        let query = request.queryBytes ?? [:]
        let scope: ChangeHistory.Scope
        switch (query["key"], query["prefix"]) {
        case (let key?, nil):
            if let problem = checkKey(key) ?? permit(.read(key: key)) { return .response(problem) }
            scope = .key(key)
        case (nil, let prefix?):
            if let problem = checkPrefix(prefix) ?? permit(.list(prefix: prefix)) { return .response(problem) }
            scope = .prefix(prefix)
        default:
            return .response(json(400, false, "GET /watch needs exactly one of ?key=k or ?prefix=p (an empty prefix "
                + "watches every key)", seq: nil))
        }
        var from: UInt64?
        if let text = request.query("from") ?? request.headers["HTTP_LAST_EVENT_ID"] {
            guard let index = UInt64(text.trimmingCharacters(in: .whitespaces)) else {
                return .response(json(400, false, "from and Last-Event-ID must be a change index", seq: nil))
            }
            from = index
        }
        let hub = node.watch
        guard hub.watchers < hub.settings.watchersMax else { return .response(watchersFull()) }
        let router = self
        return .park { parked in
            if let refused = hub.openStream(scope, from: from, request: parked) {
                parked.finish(router.refusal(refused).cgiBytes())
            }
        }
    }

    func watchersFull() -> HTTPResponse {
        json(503, false, "too many watchers (watch.watchers_max \(node.watch.settings.watchersMax)); retry later",
             seq: nil)
    }

    /// The answer to a stream the hub refused.
    func refusal(_ refusal: WatchHub.Refusal) -> HTTPResponse {
        switch refusal {
        case .compacted(let compacted):
            var writer = JSONWriter()
            writer.field("status", false)
            writer.field("message", "compacted: changes after the resume point are no longer kept (the oldest kept "
                + "is \(compacted.oldestKept)); re-read, then watch from index \(compacted.reread)")
            writer.field("seq", nil)
            writer.field("server", serverID)
            writer.field("oldest_index", compacted.oldestKept)
            writer.field("index", compacted.reread)
            return HTTPResponse(status: 410, headers: [("X-Kv-Index", String(compacted.reread))], body: writer.finish())
        case .future(let newest):
            return json(400, false, "the resume point is after the newest index \(newest)", seq: nil)
        case .full:
            return watchersFull()
        }
    }

    /// Milliseconds in `30s`, `500ms`, `5m`, `1h` or a bare number of seconds (Consul's forms); nil if malformed.
    static func durationMs(_ text: String) -> Int? {
        let units: [(String, Int)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let number = Int(text.dropLast(suffix.count)), number >= 0, number <= Int(Int32.max) else { return nil }
            return number * scale
        }
        guard let seconds = Int(text), seconds >= 0, seconds <= Int(Int32.max) else { return nil }
        return seconds * 1000
    }
}
