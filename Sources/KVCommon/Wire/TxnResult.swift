import Foundation

/// What a replica's yes vote on a `txn` prepare reports: which branch it chose, what its `get`s read, both under
/// the transaction's locks, and the created seq of each key the branch writes. On the wire: `"succeeded":bool,
/// "reads":[{"key":"<b64>","found":bool,"value":"<b64>","version":N,"created":N}],"write_created":[N,...]`.
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
    /// One per put and del of the chosen branch, in order: the key's created seq after a put (the transaction's
    /// own seq for a new key), before a del; 0 for a del of a key that is absent (it writes nothing). Every
    /// replica holds the same state, so every yes vote carries the same list (what a change of the watch
    /// history records as `created`).
    public var writeCreated: [UInt64]

    public init(succeeded: Bool, reads: [Read], writeCreated: [UInt64] = []) {
        self.succeeded = succeeded
        self.reads = reads
        self.writeCreated = writeCreated
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

    static func parse(succeeded: Bool, reads: [JSONValue], writeCreated: [JSONValue]) -> TxnResult? {
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
        var created: [UInt64] = []
        for item in writeCreated {
            guard let seq = item.uint64Value else { return nil }
            created.append(seq)
        }
        return TxnResult(succeeded: succeeded, reads: result, writeCreated: created)
    }
}
