import Foundation
import KVCommon

/// The Server-Sent Events a `GET /watch` stream carries (text/event-stream, see the WHATWG HTML standard, 9.2):
///
/// ```
/// id: 42
/// event: put
/// data: {"index":42,"key":"k","value":"v","version":7000000012,"created":7000000003,"lease":0}
/// ```
///
/// `event` is `put`, `delete` or `expire`; `id` is the change index, set on the last change of an index only, so a
/// client that lost its connection in the middle of a transaction's changes resumes before it (`Last-Event-ID`)
/// rather than after it. `ready` (id: the index the stream starts after) follows the changes a resume replays;
/// comment lines are heartbeats.
enum WatchEvents {
    /// The response head, with the index the stream starts after.
    static func head(index: UInt64) -> [UInt8] {
        Array(("Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            + "X-Accel-Buffering: no\r\nX-Kv-Index: \(index)\r\n\r\nretry: 1000\n\n").utf8)
    }

    /// Every change in order, the `id:` on the last one of each index.
    static func events(_ changes: [ChangeHistory.Change]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(changes.reduce(0) { $0 + $1.key.count + $1.value.count + 160 })
        for position in changes.indices {
            let lastOfIndex = position + 1 == changes.count || changes[position + 1].index != changes[position].index
            append(changes[position], id: lastOfIndex, to: &bytes)
        }
        return bytes
    }

    static func ready(index: UInt64) -> [UInt8] {
        Array("id: \(index)\nevent: ready\ndata: {\"index\":\(index)}\n\n".utf8)
    }

    static let heartbeat = Array(": heartbeat\n\n".utf8)

    static func error(_ message: String) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("status", false)
        writer.field("message", message)
        return Array("event: error\ndata: ".utf8) + writer.finish() + Array("\n\n".utf8)
    }

    private static func append(_ change: ChangeHistory.Change, id: Bool, to bytes: inout [UInt8]) {
        if id { bytes.append(contentsOf: "id: \(change.index)\n".utf8) }
        bytes.append(contentsOf: "event: \(change.kind.rawValue)\ndata: ".utf8)
        var writer = JSONWriter(capacity: change.key.count + change.value.count + 128)
        writer.field("index", change.index)
        KVRouter.field("key", change.key, to: &writer)
        if change.kind == .put { KVRouter.field("value", change.value, to: &writer) }
        writer.field("version", change.version)
        writer.field("created", change.created)
        writer.field("lease", change.lease)
        // JSON from JSONWriter escapes control characters, so it never holds a newline that would end the field.
        bytes.append(contentsOf: writer.finish())
        bytes.append(contentsOf: "\n\n".utf8)
    }
}
