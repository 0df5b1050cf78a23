/// A record of a replica snapshot file: the whole participant state as of the start of log segment
/// `generation`. Written in this order: one `header`, the `entry`, `prepared` and `decided` records, one
/// `trailer` whose counts and digest must match what came before (a snapshot without its trailer is
/// incomplete and is never used).
public enum SnapshotRecord: Equatable, Sendable {
    case header(generation: UInt64, lastCommittedSeq: UInt64, maxForgottenSeq: UInt64, joined: Bool)
    /// The seq the replica last joined at (`Participant.joinedSince`), right after the header; absent means 0.
    case joinedSince(UInt64)
    /// The transfer that reset an out-of-sync replica (`Participant.resetBy`), after the header; absent means 0.
    case resetBy(UInt64)
    /// The master fence (`Participant.fence`), after the header; absent means none.
    case fence(epoch: UInt64, master: String)
    case entry(key: [UInt8], value: [UInt8], version: UInt64, created: UInt64)
    /// An in-doubt transaction: its `prepare` or `prepareTxn` record.
    case prepared(ReplicaRecord)
    case decided(seq: UInt64, committed: Bool)
    /// A remembered commit with its operation's fingerprint (`DecisionMemory`).
    case committed(seq: UInt64, fingerprint: UInt32)
    case trailer(entries: UInt64, prepared: UInt64, decided: UInt64, digest: UInt64)
    /// The trailer of a snapshot from a version whose digest left out `created` (type 5); read, never written.
    case trailerWithoutCreated(entries: UInt64, prepared: UInt64, decided: UInt64, digest: UInt64)

    public func encoded() -> [UInt8] {
        var writer = BinaryWriter(capacity: encodedSizeHint)
        encode(into: &writer)
        return writer.bytes
    }

    var encodedSizeHint: Int {
        if case .entry(let key, let value, _, _) = self { return key.count + value.count + 32 }
        return 64
    }

    /// Appends the payload to `writer` (the snapshot writer frames many records in one buffer).
    public func encode(into writer: inout BinaryWriter) {
        switch self {
        case .header(let generation, let lastCommittedSeq, let maxForgottenSeq, let joined):
            writer.u8(1)
            writer.u64(generation)
            writer.u64(lastCommittedSeq)
            writer.u64(maxForgottenSeq)
            writer.u8(joined ? 1 : 0)
        case .joinedSince(let seq):
            writer.u8(6)
            writer.u64(seq)
        case .resetBy(let transfer):
            writer.u8(8)
            writer.u64(transfer)
        case .fence(let epoch, let master):
            writer.u8(9)
            writer.u64(epoch)
            writer.blob(Array(master.utf8))
        case .entry(let key, let value, let version, let created):
            writer.u8(2)
            writer.blob(key)
            writer.blob(value)
            writer.u64(version)
            writer.u64(created)
        case .prepared(let record):
            writer.u8(3)
            writer.blob(record.encoded())
        case .decided(let seq, let committed):
            writer.u8(4)
            writer.u64(seq)
            writer.u8(committed ? 1 : 0)
        case .committed(let seq, let fingerprint):
            writer.u8(7)
            writer.u64(seq)
            writer.u32(fingerprint)
        case .trailer(let entries, let prepared, let decided, let digest),
             .trailerWithoutCreated(let entries, let prepared, let decided, let digest):
            if case .trailer = self { writer.u8(10) } else { writer.u8(5) }
            writer.u64(entries)
            writer.u64(prepared)
            writer.u64(decided)
            writer.u64(digest)
        }
    }

    public static func decode(_ payload: [UInt8]) throws -> SnapshotRecord {
        var reader = BinaryReader(payload)
        let record: SnapshotRecord
        switch try reader.u8() {
        case 1: record = .header(generation: try reader.u64(), lastCommittedSeq: try reader.u64(),
                                 maxForgottenSeq: try reader.u64(), joined: try reader.u8() == 1)
        case 2: record = .entry(key: try reader.blob(), value: try reader.blob(), version: try reader.u64(),
                                created: try reader.u64())
        case 3:
            let inner = try ReplicaRecord.decode(try reader.blob())
            switch inner {
            case .prepare, .prepareTxn: record = .prepared(inner)
            default: throw KVError.recordMalformed("snapshot prepared record does not hold a prepare")
            }
        case 6: record = .joinedSince(try reader.u64())
        case 8: record = .resetBy(try reader.u64())
        case 9: record = .fence(epoch: try reader.u64(), master: try reader.text())
        case 7: record = .committed(seq: try reader.u64(), fingerprint: try reader.u32())
        case 4: record = .decided(seq: try reader.u64(), committed: try reader.u8() == 1)
        case 10: record = .trailer(entries: try reader.u64(), prepared: try reader.u64(), decided: try reader.u64(),
                                   digest: try reader.u64())
        case 5: record = .trailerWithoutCreated(entries: try reader.u64(), prepared: try reader.u64(),
                                                decided: try reader.u64(), digest: try reader.u64())
        case let type: throw KVError.recordMalformed("unknown snapshot record type \(type)")
        }
        guard reader.isAtEnd else { throw KVError.recordMalformed("trailing bytes in snapshot record") }
        return record
    }
}
