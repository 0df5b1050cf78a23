/// A record of the master's decision log (presumed abort: only commits are logged).
///
/// Payload layout: a type byte, then the seq (u64); `commit` adds the participant count (u32) and each
/// participant id as a u32-length-prefixed UTF-8 string.
public enum DecisionRecord: Equatable, Sendable {
    /// Transaction `seq` commits on `participants`. Forced (fsynced) before any `com` is sent.
    case commit(seq: UInt64, participants: [String])
    /// Every participant acknowledged the commit of `seq`; the master may forget it. Not forced.
    case end(seq: UInt64)

    public var seq: UInt64 {
        switch self {
        case .commit(let seq, _), .end(let seq): return seq
        }
    }

    public func encoded() -> [UInt8] {
        var writer = BinaryWriter()
        switch self {
        case .commit(let seq, let participants):
            writer.u8(1)
            writer.u64(seq)
            writer.u32(UInt32(participants.count))
            for participant in participants { writer.blob(Array(participant.utf8)) }
        case .end(let seq):
            writer.u8(2)
            writer.u64(seq)
        }
        return writer.bytes
    }

    public static func decode(_ payload: [UInt8]) throws -> DecisionRecord {
        var reader = BinaryReader(payload)
        let type = try reader.u8()
        let seq = try reader.u64()
        let record: DecisionRecord
        switch type {
        case 1:
            let count = try reader.u32()
            guard count <= 4096 else { throw KVError.recordMalformed("participant count \(count) too large") }
            var participants: [String] = []
            for _ in 0..<count { participants.append(String(decoding: try reader.blob(limit: 1024), as: UTF8.self)) }
            record = .commit(seq: seq, participants: participants)
        case 2: record = .end(seq: seq)
        default: throw KVError.recordMalformed("unknown decision record type \(type)")
        }
        guard reader.isAtEnd else { throw KVError.recordMalformed("trailing bytes in decision record") }
        return record
    }
}
