import KVCommon

/// What a seq asked the replicas to do: one put or delete, or a multi-key transaction.
enum SimOp: Equatable {
    case single(WriteOp)
    case txn(TxnSpec)

    init(_ request: WireRequest) {
        switch request.command {
        case .txn:
            let spec = (try? JSONValue.parse(request.value).get()).flatMap { try? TxnSpec.parse($0, base64: true) }
            self = .txn(spec ?? TxnSpec(compare: [], success: [], failure: []))
        case .del: self = .single(.delete(key: request.key))
        default: self = .single(.put(key: request.key, value: request.value))
        }
    }

    var brief: String {
        switch self {
        case .single(let op): return op.brief
        case .txn(let spec):
            return "txn \(spec.compare.count) compares, \(spec.success.count)/\(spec.failure.count) ops on "
                + spec.keys.map(\.leaseBrief).joined(separator: ",")
        }
    }
}

/// The committed history the checker expects, per key: every committed write in decision order (the order its
/// COMMIT became durable: writes that share a key are serialized by its lock, and a transaction's compares are
/// evaluated under the locks of their keys too, so this is the order replicas see them in). It is the checker's
/// own account: a transaction's compares are evaluated here, independently of the replicas' votes, and each
/// write remembers the lease it attached its key to, which is what lease removals are judged by.
struct SimModel {
    struct Written {
        var seq: UInt64
        /// nil for a delete.
        var value: [UInt8]?
        var created: UInt64
        /// The lease this write attached its key to (it wrote the key's marker naming it), 0 for none.
        var lease: UInt64
        var acked: Int?
    }

    struct Entry {
        var value: [UInt8]
        var version: UInt64
        var created: UInt64
        var lease: UInt64
    }

    /// What one committed seq did.
    struct Applied {
        /// The branch a transaction took (nil for a single write).
        var succeeded: Bool?
        /// Its changes, as watchers must see them: kind (put or delete), key, value.
        var changes: [(isPut: Bool, key: [UInt8], value: [UInt8])] = []
        /// Lease rules it broke.
        var violations: [String] = []
    }

    private(set) var history: [[UInt8]: [Written]] = [:]

    func entry(_ key: [UInt8]) -> Entry? {
        guard let last = history[key]?.last, let value = last.value else { return nil }
        return Entry(value: value, version: last.seq, created: last.created, lease: last.lease)
    }

    var keys: [[UInt8]] { Array(history.keys) }

    /// Applies the committed seq. A put's version is its seq: `versionWentBack` says whether it was not above
    /// the version it replaces.
    mutating func commit(_ op: SimOp, seq: UInt64, versionWentBack: inout Bool) -> Applied {
        switch op {
        case .single(let write):
            apply(write, seq: seq, lease: 0, versionWentBack: &versionWentBack)
            return Applied(succeeded: nil, changes: [Self.change(write)])
        case .txn(let spec):
            let succeeded = spec.compare.allSatisfy { Self.holds($0, entry($0.key)) }
            let writes = (succeeded ? spec.success : spec.failure).compactMap(\.write)
            var applied = Applied(succeeded: succeeded, violations: leaseViolations(writes, seq: seq))
            for write in writes {
                // A delete of a key that is absent writes nothing.
                if case .delete(let key) = write, entry(key) == nil { continue }
                apply(write, seq: seq, lease: Self.attachment(of: write.key, in: writes),
                      versionWentBack: &versionWentBack)
                applied.changes.append(Self.change(write))
            }
            return applied
        }
    }

    /// Marks the writes of `seq` to `keys` as acknowledged at `step` (the first acknowledgement counts).
    mutating func acknowledge(_ seq: UInt64, keys: [[UInt8]], step: Int) {
        for key in keys {
            guard let index = history[key]?.firstIndex(where: { $0.seq == seq }) else { continue }
            if history[key]![index].acked == nil { history[key]![index].acked = step }
        }
    }

    /// Once every lease is gone: nothing of any lease may be left, no record, no marker, and no key still
    /// holding the write that attached it.
    func leaseLeftovers() -> [String] {
        var found: [String] = []
        for key in history.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let entry = entry(key) else { continue }
            if LeaseKeys.isReserved(key) {
                found.append("\(key.leaseBrief) is still there (version \(entry.version)) after every lease expired")
            } else if entry.lease != 0 {
                found.append("\(key.brief) still holds the write that attached it to lease \(entry.lease) "
                    + "(version \(entry.version)), which is gone")
            }
        }
        return found
    }

    // MARK: - Rules

    private mutating func apply(_ write: WriteOp, seq: UInt64, lease: UInt64, versionWentBack: inout Bool) {
        switch write {
        case .put(let key, let value):
            let current = entry(key)
            if let current, current.version >= seq { versionWentBack = true }
            history[key, default: []].append(Written(seq: seq, value: value, created: current?.created ?? seq,
                                                     lease: lease))
        case .delete(let key):
            history[key, default: []].append(Written(seq: seq, value: nil, created: 0, lease: 0))
        }
    }

    /// The lease `key`'s write attaches it to: the branch also puts the key's marker, naming the lease.
    private static func attachment(of key: [UInt8], in writes: [WriteOp]) -> UInt64 {
        guard !LeaseKeys.isReserved(key) else { return 0 }
        let marker = LeaseKeys.marker(key)
        for case .put(let written, let value) in writes where written == marker {
            return LeaseKeys.number(value) ?? 0
        }
        return 0
    }

    /// A lease's removal deletes only keys whose current value is the write that attached them to that lease (a
    /// key written since belongs to its writer); an attachment commits only while its lease exists.
    private func leaseViolations(_ writes: [WriteOp], seq: UInt64) -> [String] {
        var violations: [String] = []
        let removed = writes.compactMap { write -> UInt64? in
            guard case .delete(let key) = write, case .record(let id) = LeaseKeys.parse(key) else { return nil }
            return id
        }
        for lease in removed {
            for case .delete(let key) in writes where !LeaseKeys.isReserved(key) {
                guard let current = entry(key) else { continue }
                if current.lease != lease {
                    violations.append("seq \(seq), the removal of lease \(lease), deletes \(key.brief) at version "
                        + "\(current.version), written \(current.lease == 0 ? "without a lease" : "for lease \(current.lease)")")
                }
            }
        }
        for write in writes {
            let lease = Self.attachment(of: write.key, in: writes)
            if lease != 0, entry(LeaseKeys.record(lease)) == nil {
                violations.append("seq \(seq) attaches \(write.key.brief) to lease \(lease), which does not exist")
            }
        }
        return violations
    }

    private static func change(_ write: WriteOp) -> (isPut: Bool, key: [UInt8], value: [UInt8]) {
        switch write {
        case .put(let key, let value): return (true, key, value)
        case .delete(let key): return (false, key, [])
        }
    }

    /// A compare, as the API documents it (`TxnSpec`): an absent key has version and created 0, and only a
    /// `!=` on its value holds.
    static func holds(_ compare: TxnSpec.Compare, _ entry: Entry?) -> Bool {
        func order(_ lhs: UInt64, _ rhs: UInt64) -> Int { lhs < rhs ? -1 : (lhs == rhs ? 0 : 1) }
        let result: Int
        switch compare.target {
        case .value:
            guard let entry else { return compare.comparison == .notEqual }
            result = entry.value == compare.bytes ? 0 : (entry.value.lexicographicallyPrecedes(compare.bytes) ? -1 : 1)
        case .version: result = order(entry?.version ?? 0, compare.number)
        case .created: result = order(entry?.created ?? 0, compare.number)
        case .exists: result = order(entry == nil ? 0 : 1, compare.number)
        }
        switch compare.comparison {
        case .equal: return result == 0
        case .notEqual: return result != 0
        case .less: return result < 0
        case .greater: return result > 0
        }
    }
}

extension Array where Element == UInt8 {
    /// Reserved keys start with 0xFF: shown as `~kv/...`.
    var leaseBrief: String {
        LeaseKeys.isReserved(self) ? "~" + String(decoding: dropFirst(), as: UTF8.self) : brief
    }
}
