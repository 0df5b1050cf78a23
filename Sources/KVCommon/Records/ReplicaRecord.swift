/// A record of a replica's log. The log is the replica's only source of truth: the key space is what
/// replaying these records in order produces.
///
/// Payload layout (inside the checksummed frame of `LogFile`): a type byte, the seq (u64), then for
/// `prepare` the op byte (1 put, 2 delete), key and value as u32-length-prefixed byte strings.
public enum ReplicaRecord: Equatable, Sendable {
    /// The replica voted yes for `op` under `seq`; the key stays locked until a decision record follows.
    /// `members`: the transaction's participants as the master announced them (empty if it announced none).
    case prepare(seq: UInt64, op: WriteOp, members: [Member] = [])
    /// Transaction `seq` committed: apply its op.
    case commit(seq: UInt64)
    /// Transaction `seq` aborted: drop its op and release its lock.
    case abort(seq: UInt64)
    /// The replica voted yes for the writes `ops` of a multi-key transaction, holding locks on `locked`.
    case prepareTxn(seq: UInt64, ops: [WriteOp], locked: [[UInt8]], members: [Member] = [])
    /// State transfer: install a committed entry.
    case load(key: [UInt8], value: [UInt8], version: UInt64, created: UInt64)
    /// State transfer: remove a key.
    case drop(key: [UInt8])
    /// State transfer begins: the key space is emptied and the replica is out of sync until `join`. `transfer`
    /// names the transfer that reset it (0: none named), which its `join` must name again.
    case reset(transfer: UInt64 = 0)
    /// State transfer finished: the replica holds the committed state and takes part again in transactions
    /// with seqs above `since` (it knows nothing of those at or below it).
    case join(since: UInt64)
    /// The replica takes 2PC commands only from `master` at seq epoch `epoch` or a newer one (`MasterFence`).
    case fence(epoch: UInt64, master: String)

    public var seq: UInt64 {
        switch self {
        case .prepare(let seq, _, _), .commit(let seq), .abort(let seq), .prepareTxn(let seq, _, _, _): return seq
        case .load(_, _, let version, _): return version
        case .drop, .reset, .join, .fence: return 0
        }
    }

    /// A 31-bit fingerprint of a prepare's operation (members aside; never 0), remembered with its commit so that
    /// a later prepare reusing the seq can be told from a duplicate. CRC-32C: cheap on large values.
    var operationFingerprint: UInt32 {
        func fold(_ op: WriteOp, _ seed: UInt32) -> UInt32 {
            switch op {
            case .put(let key, let value):
                return CRC32C.checksum(value, seed: CRC32C.checksum(key, seed: seed ^ 0x50 ^ UInt32(truncatingIfNeeded: key.count)))
            case .delete(let key):
                return CRC32C.checksum(key, seed: seed ^ 0x44 ^ UInt32(truncatingIfNeeded: key.count))
            }
        }
        var crc: UInt32 = 0
        switch self {
        case .prepare(_, let op, _):
            crc = fold(op, 0)
        case .prepareTxn(_, let ops, let locked, _):
            crc = 0x54
            for op in ops { crc = fold(op, crc) }
            for key in locked { crc = CRC32C.checksum(key, seed: crc ^ 0x4C ^ UInt32(truncatingIfNeeded: key.count)) }
        default:
            break
        }
        return (crc & 0x7FFF_FFFF) | 1
    }

    /// The record with its members list left out (two prepares of one operation compare equal).
    var withoutMembers: ReplicaRecord {
        switch self {
        case .prepare(let seq, let op, _): return .prepare(seq: seq, op: op)
        case .prepareTxn(let seq, let ops, let locked, _): return .prepareTxn(seq: seq, ops: ops, locked: locked)
        default: return self
        }
    }

    public func encoded() -> [UInt8] {
        var writer = BinaryWriter()
        switch self {
        case .prepare(let seq, let op, let members):
            writer.u8(members.isEmpty ? 1 : 10)
            writer.u64(seq)
            Self.write(op, to: &writer)
            if !members.isEmpty { Self.write(members, to: &writer) }
        case .commit(let seq):
            writer.u8(2)
            writer.u64(seq)
        case .abort(let seq):
            writer.u8(3)
            writer.u64(seq)
        case .load(let key, let value, let version, let created):
            writer = BinaryWriter(capacity: key.count + value.count + 40)
            writer.u8(4)
            writer.u64(version)
            writer.blob(key)
            writer.blob(value)
            writer.u64(created)
        case .drop(let key):
            writer.u8(5)
            writer.u64(0)
            writer.blob(key)
        case .reset(let transfer):
            writer.u8(6)
            writer.u64(transfer)
        case .join(let since):
            writer.u8(7)
            writer.u64(since)
        case .fence(let epoch, let master):
            writer.u8(12)
            writer.u64(epoch)
            writer.blob(Array(master.utf8))
        case .prepareTxn(let seq, let ops, let locked, let members):
            writer.u8(members.isEmpty ? 8 : 11)
            writer.u64(seq)
            writer.u32(UInt32(ops.count))
            for op in ops { Self.write(op, to: &writer) }
            writer.u32(UInt32(locked.count))
            for key in locked { writer.blob(key) }
            if !members.isEmpty { Self.write(members, to: &writer) }
        }
        return writer.bytes
    }

    public static func decode(_ payload: [UInt8]) throws -> ReplicaRecord {
        var reader = BinaryReader(payload)
        let type = try reader.u8()
        let seq = try reader.u64()
        let record: ReplicaRecord
        switch type {
        case 1: record = .prepare(seq: seq, op: try Self.readOp(&reader))
        case 10: record = .prepare(seq: seq, op: try Self.readOp(&reader), members: try Self.readMembers(&reader))
        case 2: record = .commit(seq: seq)
        case 3: record = .abort(seq: seq)
        case 4: record = .load(key: try reader.blob(), value: try reader.blob(), version: seq, created: try reader.u64())
        case 5: record = .drop(key: try reader.blob())
        case 6: record = .reset(transfer: seq)
        case 7: record = .join(since: seq)
        case 12: record = .fence(epoch: seq, master: try reader.text())
        case 8, 11:
            var ops: [WriteOp] = []
            for _ in 0..<min(try reader.u32(), 1 << 20) { ops.append(try Self.readOp(&reader)) }
            var locked: [[UInt8]] = []
            for _ in 0..<min(try reader.u32(), 1 << 20) { locked.append(try reader.blob()) }
            record = .prepareTxn(seq: seq, ops: ops, locked: locked, members: type == 11 ? try Self.readMembers(&reader) : [])
        default: throw KVError.recordMalformed("unknown replica record type \(type)")
        }
        guard reader.isAtEnd else { throw KVError.recordMalformed("trailing bytes in replica record") }
        return record
    }

    /// A write as `op:u8 (1 put, 2 delete) key:blob value:blob` (the value is empty for a delete).
    private static func write(_ op: WriteOp, to writer: inout BinaryWriter) {
        switch op {
        case .put(let key, let value):
            writer.u8(1)
            writer.blob(key)
            writer.blob(value)
        case .delete(let key):
            writer.u8(2)
            writer.blob(key)
            writer.blob([UInt8]())
        }
    }

    /// Members as `count:u32` then `id:blob host:blob port:u32` each.
    private static func write(_ members: [Member], to writer: inout BinaryWriter) {
        writer.u32(UInt32(members.count))
        for member in members {
            writer.blob(Array(member.id.utf8))
            writer.blob(Array(member.host.utf8))
            writer.u32(UInt32(member.port))
        }
    }

    private static func readMembers(_ reader: inout BinaryReader) throws -> [Member] {
        let count = try reader.u32()
        guard count <= 4096 else { throw KVError.recordMalformed("\(count) members") }
        var members: [Member] = []
        for _ in 0..<count {
            let id = try reader.text()
            let host = try reader.text()
            members.append(Member(id: id, host: host, port: Int(try reader.u32())))
        }
        return members
    }

    private static func readOp(_ reader: inout BinaryReader) throws -> WriteOp {
        let type = try reader.u8()
        let key = try reader.blob()
        let value = try reader.blob()
        switch type {
        case 1: return .put(key: key, value: value)
        case 2: return .delete(key: key)
        default: throw KVError.recordMalformed("unknown op type \(type)")
        }
    }
}
