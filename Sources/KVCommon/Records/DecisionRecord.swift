/// A record of the master's decision log (presumed abort: only commits are logged).
///
/// Payload layout: a type byte, then per type:
/// - 1, a COMMIT of an older version: seq (u64), participant count (u32), each id as a u32-length-prefixed
///   UTF-8 string. Read as a commit without an index.
/// - 3, COMMIT: as type 1, then the change index (u64) and the changes (u32 count; each: kind u8, key blob,
///   value blob, version u64, created u64, lease u64).
/// - 2, END: seq (u64).
/// - 4, HISTORY: the index (u64) and its changes, as in COMMIT: a change whose commit ended, carried forward by
///   a compaction so that watchers can still resume before it.
/// - 5, HORIZON: compacted-through and last index (u64 each), written first by a compaction: every index at or
///   below the first is outside the history kept, and no index at or below the second is ever issued again.
public enum DecisionRecord: Equatable, Sendable {
    public typealias Change = ChangeHistory.Change

    /// Transaction `seq` commits on `participants`, as change `index` (0: logged by a version without indexes).
    /// Forced (fsynced) before any `com` is sent.
    case commit(seq: UInt64, participants: [String], index: UInt64, changes: [Change])
    /// Every participant acknowledged the commit of `seq`; the master may forget it. Not forced.
    case end(seq: UInt64)
    case history(index: UInt64, changes: [Change])
    case horizon(compactedThrough: UInt64, lastIndex: UInt64)

    /// A COMMIT without an index (tests and logs of older versions).
    public static func commit(seq: UInt64, participants: [String]) -> DecisionRecord {
        .commit(seq: seq, participants: participants, index: 0, changes: [])
    }

    public func encoded() -> [UInt8] {
        var writer = BinaryWriter(capacity: 64)
        switch self {
        case .commit(let seq, let participants, let index, let changes):
            writer.u8(3)
            writer.u64(seq)
            writer.u32(UInt32(participants.count))
            for participant in participants { writer.blob(Array(participant.utf8)) }
            writer.u64(index)
            Self.encode(changes, into: &writer)
        case .end(let seq):
            writer.u8(2)
            writer.u64(seq)
        case .history(let index, let changes):
            writer.u8(4)
            writer.u64(index)
            Self.encode(changes, into: &writer)
        case .horizon(let compactedThrough, let lastIndex):
            writer.u8(5)
            writer.u64(compactedThrough)
            writer.u64(lastIndex)
        }
        return writer.bytes
    }

    public static func decode(_ payload: [UInt8]) throws -> DecisionRecord {
        var reader = BinaryReader(payload)
        let type = try reader.u8()
        let record: DecisionRecord
        switch type {
        case 1, 3:
            let seq = try reader.u64()
            let count = try reader.u32()
            guard count <= 4096 else { throw KVError.recordMalformed("participant count \(count) too large") }
            var participants: [String] = []
            for _ in 0..<count { participants.append(try reader.text()) }
            if type == 1 {
                record = .commit(seq: seq, participants: participants)
            } else {
                let index = try reader.u64()
                record = .commit(seq: seq, participants: participants, index: index,
                                 changes: try decodeChanges(&reader, index: index))
            }
        case 2: record = .end(seq: try reader.u64())
        case 4:
            let index = try reader.u64()
            record = .history(index: index, changes: try decodeChanges(&reader, index: index))
        case 5: record = .horizon(compactedThrough: try reader.u64(), lastIndex: try reader.u64())
        default: throw KVError.recordMalformed("unknown decision record type \(type)")
        }
        guard reader.isAtEnd else { throw KVError.recordMalformed("trailing bytes in decision record") }
        return record
    }

    /// The bytes the record takes in the file, frame header included (computed, not encoded: one per write).
    public var fileBytes: Int {
        switch self {
        case .commit(_, let participants, _, let changes):
            return 8 + 21 + participants.reduce(0) { $0 + 4 + $1.utf8.count } + Self.bytes(of: changes)
        case .end: return 8 + 9
        case .history(_, let changes): return 8 + 9 + Self.bytes(of: changes)
        case .horizon: return 8 + 17
        }
    }

    private static func bytes(of changes: [Change]) -> Int {
        changes.reduce(4) { $0 + 33 + $1.key.count + $1.value.count }
    }

    private static func encode(_ changes: [Change], into writer: inout BinaryWriter) {
        writer.u32(UInt32(changes.count))
        for change in changes {
            writer.u8(change.kind.code)
            writer.blob(change.key)
            writer.blob(change.value)
            writer.u64(change.version)
            writer.u64(change.created)
            writer.u64(change.lease)
        }
    }

    private static func decodeChanges(_ reader: inout BinaryReader, index: UInt64) throws -> [Change] {
        let count = try reader.u32()
        guard count <= 1 << 20 else { throw KVError.recordMalformed("change count \(count) too large") }
        var changes: [Change] = []
        changes.reserveCapacity(Int(count))
        for _ in 0..<count {
            let code = try reader.u8()
            guard let kind = Change.Kind(code: code) else { throw KVError.recordMalformed("unknown change kind \(code)") }
            let key = try reader.blob()
            let value = try reader.blob()
            changes.append(Change(index: index, kind: kind, key: key, value: value, version: try reader.u64(),
                                  created: try reader.u64(), lease: try reader.u64()))
        }
        return changes
    }
}

extension ChangeHistory.Change.Kind {
    /// The kind's byte in a decision record.
    var code: UInt8 {
        switch self {
        case .put: return 1
        case .delete: return 2
        case .expire: return 3
        }
    }

    init?(code: UInt8) {
        switch code {
        case 1: self = .put
        case 2: self = .delete
        case 3: self = .expire
        default: return nil
        }
    }
}
