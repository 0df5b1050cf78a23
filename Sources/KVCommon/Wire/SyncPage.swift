import Foundation

/// One page of a state-transfer snapshot (`ID;page;;`): committed entries and whether the snapshot is done.
/// On the wire: `"entries":[{"k":"<base64>","v":"<base64>","version":N,"created":N}],"done":bool`.
public struct SyncPage: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var key: [UInt8]
        public var value: [UInt8]
        public var version: UInt64
        public var created: UInt64
        public init(key: [UInt8], value: [UInt8], version: UInt64, created: UInt64) {
            self.key = key
            self.value = value
            self.version = version
            self.created = created
        }

        /// The `load` request that installs this entry on a replica being synced.
        public var loadRequest: WireRequest {
            WireRequest(seq: version, command: .load, key: key, value: Array("\(created):".utf8) + value)
        }
    }

    public var entries: [Entry]
    public var done: Bool

    public init(entries: [Entry], done: Bool) {
        self.entries = entries
        self.done = done
    }

    func json() -> [UInt8] {
        JSONWriter.array(entries.map { entry in
            var writer = JSONWriter(capacity: (entry.key.count + entry.value.count) * 4 / 3 + 64)
            writer.field("k", Data(entry.key).base64EncodedString())
            writer.field("v", Data(entry.value).base64EncodedString())
            writer.field("version", entry.version)
            writer.field("created", entry.created)
            return writer.finish()
        })
    }

    static func parse(entries: [JSONValue], done: Bool) -> SyncPage? {
        var result: [Entry] = []
        result.reserveCapacity(entries.count)
        for item in entries {
            guard let key = item["k"]?.stringValue.flatMap({ Data(base64Encoded: $0) }),
                  let value = item["v"]?.stringValue.flatMap({ Data(base64Encoded: $0) }),
                  let version = item["version"]?.uint64Value, let created = item["created"]?.uint64Value
            else { return nil }
            result.append(Entry(key: Array(key), value: Array(value), version: version, created: created))
        }
        return SyncPage(entries: result, done: done)
    }
}
