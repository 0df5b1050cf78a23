import Foundation

/// One reply line of the replica wire protocol: a JSON object on one line.
///
/// `{"status":true|false,"message":"...","seq":N|null,"server":"r1","code":"ok"}`. For a `get` that found
/// its key, `message` is the value and `seq` the seq of the transaction that last wrote it; a value that is
/// not valid UTF-8, or whose JSON escapes would make it longer than base64, is sent base64-encoded with
/// `"encoding":"base64"`. A `stat` reply adds `keys`, `digest`,
/// `last_committed_seq` and `in_doubt` (a list of `{"seq":N,"age_ms":N}`).
public struct WireReply: Equatable, Sendable {
    public var status: Bool
    public var code: ReplyCode
    public var message: String
    public var seq: UInt64?
    public var server: String
    /// The value bytes of a successful get.
    public var value: [UInt8]?
    /// For a successful get: the seq of the transaction that created the key. For a yes vote on a put or del
    /// prepare: the key's created seq after the put (the put's own seq for a new key), before the del.
    public var created: UInt64?
    /// The status of a replica, for `stat`.
    public var stat: ReplicaStat?
    /// A page of a state-transfer snapshot, for `page`.
    public var page: SyncPage?
    /// The branch and reads of a `txn` prepare.
    public var txn: TxnResult?

    public init(status: Bool, code: ReplyCode, message: String, seq: UInt64?, server: String,
                value: [UInt8]? = nil, stat: ReplicaStat? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.seq = seq
        self.server = server
        self.value = value
        self.stat = stat
    }

    /// The JSON line for this reply, with the trailing `\n`.
    public func encoded() -> [UInt8] {
        var writer = JSONWriter(capacity: 96 + (value?.count ?? message.utf8.count))
        writer.field("status", status)
        if let value {
            // As text when it is UTF-8 and its escapes do not make it longer than base64 would: a value of control
            // characters grows six-fold as JSON text, and every reply must fit `limits.wireReplyBytesMax`.
            let base64Bytes = ClusterConfig.Limits.base64Bytes(value.count)
            if value.withUnsafeBufferPointer({ JSONWriter.escapedLength($0, limit: base64Bytes) }) != nil,
               let text = String(validating: value, as: UTF8.self) {
                writer.field("message", text)
            } else {
                writer.field("message", Data(value).base64EncodedString())
                writer.field("encoding", "base64")
            }
        } else {
            writer.field("message", message)
        }
        writer.field("seq", seq)
        writer.field("server", server)
        writer.field("code", code.rawValue)
        if let created { writer.field("created", created) }
        if let stat {
            writer.field("keys", stat.keys)
            writer.field("digest", stat.digestHex)
            writer.field("last_committed_seq", stat.lastCommittedSeq)
            writer.field("in_doubt", rawJSON: stat.inDoubtJSON())
            writer.field("log_syncs", stat.logSyncs)
            writer.field("joined", stat.joined)
            writer.field("joined_since", stat.joinedSince)
            writer.field("max_seq", stat.maxSeq)
            writer.field("fence_epoch", stat.fenceEpoch)
            writer.field("fence_master", stat.fenceMaster)
            writer.field("parked_reads", stat.parkedReads)
            if !stat.dataDir.isEmpty { writer.field("data_dir", stat.dataDir) }
            if stat.requestBytesMax > 0 { writer.field("request_bytes_max", stat.requestBytesMax) }
        }
        if let page {
            writer.field("entries", rawJSON: page.json())
            writer.field("done", page.done)
        }
        if let txn {
            writer.field("succeeded", txn.succeeded)
            writer.field("reads", rawJSON: txn.readsJSON())
            writer.field("write_created", rawJSON: JSONWriter.array(txn.writeCreated.map { Array(String($0).utf8) }))
        }
        var line = writer.finish()
        line.append(UInt8(ascii: "\n"))
        return line
    }

    /// Parses a reply line. `valueExpected` says whether `message` holds a value (a successful get).
    /// Members are read one by one as they come (no dictionary): every write makes several replies.
    public static func parse(_ line: [UInt8], valueExpected: Bool) -> Result<WireReply, KVError> {
        var fields = Fields()
        if let error = JSONValue.parseMembers(line, { key, value in fields.take(key, value) }) {
            return .failure(.wireBadReply("\(error)"))
        }
        return fields.reply(valueExpected: valueExpected)
    }

    /// The members of a reply line as they are read.
    private struct Fields {
        var status: Bool?, message: String?, server: String?, seq: UInt64?, code: String?, created: UInt64?
        var base64 = false
        var keys: UInt64?, digest: String?, lastCommitted: UInt64?, inDoubt: [JSONValue]?, logSyncs: UInt64?
        var joined: Bool?, joinedSince: UInt64?, maxSeq: UInt64?, fenceEpoch: UInt64?, fenceMaster: String?, parkedReads: UInt64?
        var dataDir: String?, requestBytesMax: UInt64?
        var entries: [JSONValue]?, done: Bool?
        var succeeded: Bool?, reads: [JSONValue]?, writeCreated: [JSONValue]?

        mutating func take(_ key: String, _ value: JSONValue) {
            switch key {
            case "status": status = value.boolValue
            case "message": message = value.stringValue
            case "server": server = value.stringValue
            case "seq": seq = value.uint64Value
            case "code": code = value.stringValue
            case "created": created = value.uint64Value
            case "encoding": base64 = value.stringValue == "base64"
            case "keys": keys = value.uint64Value
            case "digest": digest = value.stringValue
            case "last_committed_seq": lastCommitted = value.uint64Value
            case "in_doubt": inDoubt = value.arrayValue
            case "log_syncs": logSyncs = value.uint64Value
            case "joined": joined = value.boolValue
            case "joined_since": joinedSince = value.uint64Value
            case "max_seq": maxSeq = value.uint64Value
            case "fence_epoch": fenceEpoch = value.uint64Value
            case "fence_master": fenceMaster = value.stringValue
            case "parked_reads": parkedReads = value.uint64Value
            case "data_dir": dataDir = value.stringValue
            case "request_bytes_max": requestBytesMax = value.uint64Value
            case "entries": entries = value.arrayValue
            case "done": done = value.boolValue
            case "succeeded": succeeded = value.boolValue
            case "reads": reads = value.arrayValue
            case "write_created": writeCreated = value.arrayValue
            default: break
            }
        }

        func reply(valueExpected: Bool) -> Result<WireReply, KVError> {
            guard let status else { return .failure(.wireBadReply("no boolean 'status'")) }
            guard let message else { return .failure(.wireBadReply("no 'message'")) }
            guard let server else { return .failure(.wireBadReply("no 'server'")) }
            let replyCode = code.flatMap(ReplyCode.init(rawValue:)) ?? (status ? .ok : .aborted)
            var reply = WireReply(status: status, code: replyCode, message: message, seq: seq, server: server)
            reply.created = created
            if valueExpected && status {
                if base64 {
                    guard let data = Data(base64Encoded: message) else { return .failure(.wireBadReply("bad base64")) }
                    reply.value = Array(data)
                } else {
                    reply.value = Array(message.utf8)
                }
            }
            if let keys, let digestText = digest, let digestValue = UInt64(digestText, radix: 16) {
                guard let keyCount = Int(exactly: keys) else { return .failure(.wireBadReply("'keys' out of range")) }
                let items = (inDoubt ?? []).compactMap { item -> ReplicaStat.InDoubt? in
                    guard let seq = item["seq"]?.uint64Value else { return nil }
                    return ReplicaStat.InDoubt(seq: seq, ageMs: item["age_ms"]?.uint64Value ?? 0,
                                               recovered: item["recovered"]?.boolValue ?? false,
                                               blocked: item["blocked"]?.boolValue ?? false)
                }
                var stat = ReplicaStat(keys: keyCount, digest: digestValue, lastCommittedSeq: lastCommitted ?? 0,
                                       inDoubt: items)
                stat.logSyncs = logSyncs ?? 0
                stat.joined = joined ?? true
                stat.joinedSince = joinedSince ?? 0
                stat.maxSeq = maxSeq ?? max(lastCommitted ?? 0, items.map(\.seq).max() ?? 0)
                stat.fenceEpoch = fenceEpoch ?? 0
                stat.fenceMaster = fenceMaster ?? ""
                stat.parkedReads = Int(clamping: parkedReads ?? 0)
                stat.dataDir = dataDir ?? ""
                stat.requestBytesMax = Int(clamping: requestBytesMax ?? 0)
                reply.stat = stat
            }
            if let entries, let done {
                guard let page = SyncPage.parse(entries: entries, done: done) else {
                    return .failure(.wireBadReply("malformed snapshot page"))
                }
                reply.page = page
            }
            if let succeeded, let reads {
                guard let txn = TxnResult.parse(succeeded: succeeded, reads: reads, writeCreated: writeCreated ?? []) else {
                    return .failure(.wireBadReply("malformed txn result"))
                }
                reply.txn = txn
            }
            return .success(reply)
        }
    }
}
