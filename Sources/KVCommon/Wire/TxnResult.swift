import Foundation

/// What a replica's yes vote on a `txn` prepare reports: which branch it chose and what its `get`s read,
/// both under the transaction's locks. On the wire: `"succeeded":bool,"reads":[{"key":"<b64>","found":bool,
/// "value":"<b64>","version":N,"created":N}]`.
public struct TxnResult: Equatable, Sendable {
    public struct Read: Equatable, Sendable {
        public var key: [UInt8]
        public var entry: Participant.Entry?
        public init(key: [UInt8], entry: Participant.Entry?) {
            self.key = key
            self.entry = entry
        }
    }

    public var succeeded: Bool
    public var reads: [Read]

    public init(succeeded: Bool, reads: [Read]) {
        self.succeeded = succeeded
        self.reads = reads
    }

    func readsJSON() -> [UInt8] {
        JSONWriter.array(reads.map { read in
            var writer = JSONWriter(capacity: read.key.count * 2 + (read.entry?.value.count ?? 0) * 2 + 64)
            writer.field("key", Data(read.key).base64EncodedString())
            writer.field("found", read.entry != nil)
            if let entry = read.entry {
                writer.field("value", Data(entry.value).base64EncodedString())
                writer.field("version", entry.version)
                writer.field("created", entry.created)
            }
            return writer.finish()
        })
    }

    static func parse(succeeded: Bool, reads: [JSONValue]) -> TxnResult? {
        var result: [Read] = []
        for item in reads {
            guard let key = item["key"]?.stringValue.flatMap({ Data(base64Encoded: $0) }),
                  let found = item["found"]?.boolValue else { return nil }
            var entry: Participant.Entry?
            if found {
                guard let value = item["value"]?.stringValue.flatMap({ Data(base64Encoded: $0) }),
                      let version = item["version"]?.uint64Value, let created = item["created"]?.uint64Value
                else { return nil }
                entry = Participant.Entry(value: Array(value), version: version, created: created)
            }
            result.append(Read(key: Array(key), entry: entry))
        }
        return TxnResult(succeeded: succeeded, reads: result)
    }
}
