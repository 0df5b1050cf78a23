/// The master's view of every lease (issue 13, leases): TTLs and deadlines, attached keys, and the transactions
/// that grant, attach and remove. A value type fed by the change stream (every committed change, in index
/// order, before the transaction's `com` lets replicas release its locks), so what it holds is what the
/// replicas hold; the only state of its own is the deadlines, which live in memory: a master that starts gives
/// every lease its full TTL again (as etcd does after a leader change), so no lease expires because the master
/// was down.
///
/// Removal (expiry or revoke) is one transaction that compares the lease's record version and, for each key,
/// the version its attachment wrote, and deletes the lease, its keys and their markers. A compare that fails
/// means the table missed a write (the transaction was built before it was published): the caller refreshes
/// and retries; no key written after its attachment is ever deleted.
public struct LeaseTable: Sendable {
    public struct Lease: Equatable, Sendable {
        public let id: UInt64
        public var ttlS: UInt64
        /// When it expires, in milliseconds of the caller's monotonic clock.
        public var deadlineMs: Int64
        /// The version of its record.
        public var version: UInt64
        /// Attached keys, each with the version of the write that attached it (its marker's too).
        public var keys: [[UInt8]: UInt64] = [:]
        /// Keys written or deleted since their attachment: only their markers go with the lease.
        public var stale: [[UInt8]: UInt64] = [:]
        /// An expiry or revoke is running.
        public var removing = false
    }

    public enum AttachRefusal: Error, Equatable {
        /// No such lease, or it expired or is being removed.
        case notFound
        /// Its removal would exceed `txn_ops_max` or `txn_bytes_max`; the number of keys it holds.
        case full(keys: Int)
    }

    public let opsMax: Int
    public let bytesMax: Int
    public private(set) var leases: [UInt64: Lease] = [:]
    /// Whether `load` ran: before, the master has not read the leases yet and none can be used.
    public private(set) var loaded = false
    /// The lease each marker names (attached or stale).
    private var owner: [[UInt8]: UInt64] = [:]
    /// Attachments sent and not yet answered, by lease: counted as attached when sizing the removal.
    private var pending: [UInt64: [[UInt8]: Int]] = [:]

    /// `opsMax`, `bytesMax`: `limits.txn_ops_max` and `txn_bytes_max`, which the removal must fit.
    public init(opsMax: Int, bytesMax: Int) {
        self.opsMax = opsMax
        self.bytesMax = bytesMax
    }

    // MARK: - Fed by the cluster

    /// Starts from the reserved keys as a replica listed them (`key`, `value`, `version`), with writes paused.
    public mutating func load(_ entries: [(key: [UInt8], value: [UInt8], version: UInt64)], nowMs: Int64) {
        leases = [:]
        owner = [:]
        for entry in entries {
            guard case .record(let id) = LeaseKeys.parse(entry.key) else { continue }
            leases[id] = Self.lease(id, record: entry.value, version: entry.version, nowMs: nowMs)
        }
        for entry in entries {
            guard case .marker(let key) = LeaseKeys.parse(entry.key), let id = LeaseKeys.number(entry.value),
                  leases[id] != nil else { continue }
            owner[key] = id
            leases[id]!.keys[key] = entry.version
        }
        loaded = true
    }

    /// The changes of one committed index. Records and markers first: an attachment's key comes with its marker.
    public mutating func apply(_ changes: [ChangeHistory.Change], nowMs: Int64) {
        guard loaded else { return }
        for change in changes where LeaseKeys.isReserved(change.key) {
            switch LeaseKeys.parse(change.key) {
            case .record(let id): applyRecord(id, change, nowMs: nowMs)
            case .marker(let key): applyMarker(key, change)
            case .other, .client: break
            }
        }
        guard !owner.isEmpty else { return }
        for change in changes where !LeaseKeys.isReserved(change.key) {
            guard let id = owner[change.key], let version = leases[id]?.keys[change.key], version != change.version
            else { continue }
            leases[id]!.keys[change.key] = nil
            leases[id]!.stale[change.key] = version
        }
    }

    private mutating func applyRecord(_ id: UInt64, _ change: ChangeHistory.Change, nowMs: Int64) {
        guard change.kind == .put else {
            guard let gone = leases.removeValue(forKey: id) else { return }
            for key in gone.keys.keys where owner[key] == id { owner[key] = nil }
            for key in gone.stale.keys where owner[key] == id { owner[key] = nil }
            return
        }
        if leases[id] != nil {
            leases[id]!.version = change.version
        } else {
            leases[id] = Self.lease(id, record: change.value, version: change.version, nowMs: nowMs)
        }
    }

    /// A lease read from its record (its TTL in seconds), with the full TTL from `nowMs`.
    private static func lease(_ id: UInt64, record: [UInt8], version: UInt64, nowMs: Int64) -> Lease {
        let ttl = LeaseKeys.number(record) ?? 1
        return Lease(id: id, ttlS: ttl, deadlineMs: nowMs + Int64(ttl) * 1000, version: version)
    }

    private mutating func applyMarker(_ key: [UInt8], _ change: ChangeHistory.Change) {
        if let previous = owner.removeValue(forKey: key) {
            leases[previous]?.keys[key] = nil
            leases[previous]?.stale[key] = nil
        }
        guard change.kind == .put, let id = LeaseKeys.number(change.value), leases[id] != nil else { return }
        owner[key] = id
        leases[id]!.keys[key] = change.version
    }

    // MARK: - Asked by clients

    /// The lease if it is alive at `nowMs`.
    public func lease(_ id: UInt64, nowMs: Int64) -> Lease? {
        guard let lease = leases[id], !lease.removing, lease.deadlineMs > nowMs else { return nil }
        return lease
    }

    /// Restarts the lease's TTL; nil if it is not alive.
    public mutating func keepAlive(_ id: UInt64, nowMs: Int64) -> Lease? {
        guard var lease = lease(id, nowMs: nowMs) else { return nil }
        lease.deadlineMs = nowMs + Int64(lease.ttlS) * 1000
        leases[id] = lease
        return lease
    }

    /// Counts an attachment of `key` about to be sent (until `attachDone`), if the lease is alive and its
    /// removal still fits one transaction with the key in it.
    public mutating func beginAttach(_ key: [UInt8], to id: UInt64, nowMs: Int64) -> Result<Lease, AttachRefusal> {
        guard let lease = lease(id, nowMs: nowMs) else { return .failure(.notFound) }
        let cost = removalCost(lease, adding: key)
        guard cost.ops <= opsMax, cost.bytes <= bytesMax else {
            return .failure(.full(keys: lease.keys.count + (pending[id]?.count ?? 0)))
        }
        pending[id, default: [:]][key, default: 0] += 1
        return .success(lease)
    }

    public mutating func attachDone(_ key: [UInt8], to id: UInt64) {
        guard let count = pending[id]?[key] else { return }
        pending[id]![key] = count > 1 ? count - 1 : nil
        if pending[id]!.isEmpty { pending[id] = nil }
    }

    /// What the removal transaction of the lease would count against the limits, with `adding` attached.
    func removalCost(_ lease: Lease, adding: [UInt8]? = nil) -> (ops: Int, bytes: Int) {
        var attached = Set(lease.keys.keys)
        attached.formUnion(pending[lease.id]?.keys ?? [:].keys)
        if let adding { attached.insert(adding) }
        let stale = lease.stale.keys.filter { !attached.contains($0) }
        let marker = LeaseKeys.markerPrefix.count
        let record = LeaseKeys.record(lease.id).count
        let bytes = 2 * record + attached.reduce(0) { $0 + 3 * $1.count + marker }
            + stale.reduce(0) { $0 + 2 * ($1.count + marker) }
        return (2 + 3 * attached.count + 2 * stale.count, bytes)
    }

    // MARK: - Removal

    /// Leases whose deadline passed and whose removal is not running; each is marked as being removed.
    /// At most `limit`, earliest deadline first.
    public mutating func takeExpired(nowMs: Int64, limit: Int = .max) -> [UInt64] {
        let due = leases.values.filter { !$0.removing && $0.deadlineMs <= nowMs }
            .sorted { ($0.deadlineMs, $0.id) < ($1.deadlineMs, $1.id) }.prefix(limit).map(\.id)
        for id in due { leases[id]!.removing = true }
        return due
    }

    /// Marks the lease as being removed (a revoke); nil if it is not alive.
    public mutating func beginRevoke(_ id: UInt64, nowMs: Int64) -> Lease? {
        guard let lease = lease(id, nowMs: nowMs) else { return nil }
        leases[id]!.removing = true
        return lease
    }

    /// A removal that did not commit: the lease can be removed again (an expired one on the next tick).
    public mutating func removalFailed(_ id: UInt64) { leases[id]?.removing = false }

    /// The key no longer holds the write that attached it (found by reading it after a removal's compare
    /// failed: the table was loaded from markers, without the keys' own versions).
    public mutating func markStale(_ key: [UInt8], of id: UInt64, attachedAt version: UInt64) {
        guard leases[id]?.keys[key] == version else { return }
        leases[id]!.keys[key] = nil
        leases[id]!.stale[key] = version
    }

    /// The version a key's `get` reply shows, for `markStale`: 0 for a key that is absent, nil when the read
    /// failed (its wait for a locked key ran out, the replica is not in sync) and shows nothing: taken as absent,
    /// it would mark an attached key stale, and the removal would leave the key behind.
    public static func version(from reply: WireReply) -> UInt64? {
        if reply.status { return reply.seq ?? 0 }
        return reply.code == .notFound ? 0 : nil
    }

    /// Whether any marker is known (a client key's change can then concern a lease).
    public var hasAttachments: Bool { !owner.isEmpty }

    // MARK: - The transactions

    /// Creates lease `id` with `ttlS` unless a lease with that id exists.
    public static func grant(_ id: UInt64, ttlS: UInt64) -> TxnSpec {
        let record = LeaseKeys.record(id)
        return TxnSpec(compare: [TxnSpec.Compare(key: record, target: .exists, number: 0)],
                       success: [.put(key: record, value: Array(String(ttlS).utf8))], failure: [])
    }

    /// Writes `key` attached to `lease` if the lease still exists (its record is rewritten: see `LeaseKeys`).
    public static func attach(_ key: [UInt8], value: [UInt8], to lease: Lease) -> TxnSpec {
        let record = LeaseKeys.record(lease.id)
        return TxnSpec(compare: [TxnSpec.Compare(key: record, target: .exists, number: 1)],
                       success: [.put(key: key, value: value),
                                 .put(key: LeaseKeys.marker(key), value: Array(String(lease.id).utf8)),
                                 .put(key: record, value: Array(String(lease.ttlS).utf8))],
                       failure: [])
    }

    /// Deletes the lease, the keys still attached to it and every marker naming it, if nothing changed since
    /// the table saw it.
    public static func removal(of lease: Lease) -> TxnSpec {
        let record = LeaseKeys.record(lease.id)
        var compare = [TxnSpec.Compare(key: record, target: .version, number: lease.version)]
        var success: [TxnSpec.Op] = [.delete(key: record)]
        for (key, version) in lease.keys.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            compare.append(TxnSpec.Compare(key: key, target: .version, number: version))
            success.append(.delete(key: key))
            success.append(.delete(key: LeaseKeys.marker(key)))
        }
        for (key, version) in lease.stale.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            compare.append(TxnSpec.Compare(key: LeaseKeys.marker(key), target: .version, number: version))
            success.append(.delete(key: LeaseKeys.marker(key)))
        }
        return TxnSpec(compare: compare, success: success, failure: [])
    }
}
