import Foundation
import KVCommon

/// The ejections `/status` shows, each with the wall-clock time the master took it (the manager has no clock),
/// the newest last and at most `capacity` of them. Touched only on the master's event loop.
struct EjectionLog {
    struct Entry {
        var at: Date
        var ejection: TransactionManager.Ejection
    }

    static let capacity = 32
    private(set) var entries: [Entry] = []

    mutating func record(_ ejection: TransactionManager.Ejection, at: Date = Date()) {
        entries.append(Entry(at: at, ejection: ejection))
        if entries.count > Self.capacity { entries.removeFirst(entries.count - Self.capacity) }
    }

    /// `availability` in `/status`: the settings, the replicas ejected now, and the log.
    static func statusJSON(_ settings: ClusterConfig.Availability, replicas: Int, ejected: [String],
                           entries: [Entry]) -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        writer.field("eject_after_ms", settings.ejectAfterMs)
        writer.field("min_in_sync_replicas", settings.minInSync(of: replicas))
        writer.field("ejected", rawJSON: JSONWriter.array(strings: ejected))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        writer.field("ejections", rawJSON: JSONWriter.array(entries.reversed().map { entry in
            var item = JSONWriter(capacity: 192)
            item.field("replica", entry.ejection.replica)
            item.field("at", formatter.string(from: entry.at))
            item.field("reason", entry.ejection.reason)
            item.field("in_a_row", entry.ejection.count)
            item.field("resync_held_off_ms", entry.ejection.holdMs)
            return item.finish()
        }))
        return writer.finish()
    }
}
