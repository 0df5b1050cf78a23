// Participant: the replica side of two-phase commit, as a value-type state machine.
//
// Per transaction (rmState of the TwoPhase TLA+ module in Gray and Lamport's "Consensus on Transaction
// Commit"): working -> prepared -> committed | aborted.
// Messages in: get, put/del (prepare), com, abrt, qry (outcome query), stat, and read time-outs. Actions out: persist a log
// record, reply to a request, await a decision for a parked read.
//
// Invariants:
// - A key is locked by at most one prepared transaction; a prepare on a locked key votes no at once.
// - A yes vote is always preceded, in the same action list, by `.persist(.prepare)` (or, for a duplicate, by
//   `.awaitDurable`); a commit ack by `.persist(.commit)`. The executor must not send a reply before the
//   persists listed before it (and, after `.awaitDurable`, every record persisted so far) are durable.
// - A read never sees a prepared-but-undecided value: it waits for the decision or times out.
// - Once aborted here, a seq never prepares here (late or duplicate prepares vote no).
// - A replica that is not in sync (`joined == false`: fresh data, or a state transfer under way) neither votes
//   yes nor serves reads; state transfer (`Participant+Sync.swift`) installs the committed state, then `join`.
// - "Never prepared" (`qry` of an unknown seq, answered `aborted` after recording the abort, so it stays true)
//   is claimed only by a replica that is in sync and has been since before that seq (`joinedSince`); an
//   out-of-sync replica answers `not_synced`, and one that joined later, or may have forgotten the seq (older
//   than the decision memory), `unknown_transaction`. Together with the members recorded in each prepare (the
//   asker asks only its transaction's participants), "never prepared" comes only from a participant that
//   never voted yes.

/// The replica side of 2PC. No IO inside: the caller executes the returned actions in order.
public struct Participant {
    /// Identifies one request so its reply can be routed back; assigned by the IO layer.
    public typealias RequestID = UInt64

    public struct Entry: Equatable, Sendable {
        public var value: [UInt8]
        /// Seq of the transaction that last wrote this key.
        public var version: UInt64
        /// Seq of the transaction that created this key.
        public var created: UInt64
        /// `ContentDigest.entryHash` of key, value and version, kept so that replacing or deleting the entry
        /// does not hash the old value again (a byte at a time: the largest cost of a replica's large writes);
        /// its digest term adds `created` to it. Set for entries in `store`; not part of equality.
        var entryHash: UInt64 = 0

        var digestTerm: UInt64 { ContentDigest.term(entryHash: entryHash, created: created) }

        public static func == (lhs: Entry, rhs: Entry) -> Bool {
            lhs.value == rhs.value && lhs.version == rhs.version && lhs.created == rhs.created
        }
    }

    public enum Event: Equatable {
        /// A parsed request; `nowMs` is the caller's monotonic clock, used only to age in-doubt transactions.
        /// `link`: the master and seq epoch the connection's handshake proved (nil for other peers, and on a
        /// cluster without a key), which `fence` judges.
        case request(WireRequest, RequestID, nowMs: UInt64, link: MasterLink? = nil)
        /// A parked read (see `Action.awaitDecision`) waited as long as allowed.
        case readTimedOut(RequestID)
    }

    public enum Action: Equatable {
        /// Append the record to the log; everything after it waits until it is durable.
        case persist(ReplicaRecord)
        /// Send this reply for the request.
        case reply(RequestID, WireReply)
        /// The read waits for a decision; feed `.readTimedOut` after the lock-wait limit.
        case awaitDecision(RequestID)
        /// The replies after it wait until every record persisted so far is durable, though this request writes
        /// none itself (a duplicate prepare must not vote before the first one's PREPARE is on disk).
        case awaitDurable
    }

    private struct Prepared {
        /// The writes to apply on commit.
        var ops: [WriteOp]
        /// Every key locked until the decision (writes, and for a txn also compares and reads).
        var locked: [[UInt8]]
        /// The request that prepared it, to answer a duplicate prepare the same way.
        var record: ReplicaRecord
        var preparedAtMs: UInt64
        /// Found in the log at start-up rather than prepared by this run.
        var recovered = false
        /// The transaction's participants, as the master announced them before the prepare.
        var members: [Member]
    }

    public let server: String
    public internal(set) var store: [[UInt8]: Entry] = [:]
    /// The keys of `store` in byte order, for listings; kept in step by `setEntry` and `removeEntry`.
    public internal(set) var keyIndex = SortedKeyIndex()
    public internal(set) var digest: UInt64 = 0
    /// The digest as versions before 2026-12 computed it (no `created`): what their snapshots' trailers hold.
    var digestWithoutCreated: UInt64 = 0
    public internal(set) var lastCommittedSeq: UInt64 = 0
    /// Holds the committed state of the cluster and takes part in transactions and reads.
    public internal(set) var joined = true
    /// Set by `reset`/`join` records during replay; nil if the log has neither.
    var replayedJoin: Bool?
    /// The seq the last `join` happened at: transactions at or below it may have run while this replica was out
    /// of sync, so it cannot say they never prepared here.
    public internal(set) var joinedSince: UInt64 = 0
    /// The transfer that last reset this replica (`A;reset;;`), which its `join` must name (kept in snapshots, so
    /// a snapshot taken while a large transfer loads does not make its join fail).
    var resetBy: UInt64 = 0
    /// The participants the master last announced (`memb`); recorded with every prepare. Not persisted: every
    /// connection from the master starts by announcing them again.
    public private(set) var membership: [Member] = []
    /// The epoch of `membership` (the seq field of its `memb`).
    public private(set) var membershipEpoch: UInt64 = 0
    /// The newest master taken 2PC commands from (`MasterFence`); persisted as `fence` records.
    public internal(set) var fence = MasterFence()
    /// Open state-transfer snapshots (`snap`/`page`).
    var scans = SyncScans()
    var locks: [[UInt8]: UInt64] = [:]
    private var prepared: [UInt64: Prepared] = [:]
    var decided: DecisionMemory
    /// A read waiting for the decision on a locked key.
    private enum ParkedRead {
        case get
        case list(prefix: [UInt8], after: [UInt8], limit: Int)
    }

    private var parkedReads: [[UInt8]: [(id: RequestID, read: ParkedRead)]] = [:]
    private var parkedKeys: [RequestID: [UInt8]] = [:]

    /// Bytes one page (`list`, `page`) may take on the wire; a page always holds at least one entry.
    public private(set) var pageBytesMax: Int

    /// `limits.txn_ops_max` and `limits.txn_bytes_max`, applied here too: the master checks a transaction
    /// before it prepares it, and a replica must not let any peer lock more than those allow.
    public private(set) var txnOpsMax: Int
    public private(set) var txnBytesMax: Int

    public init(server: String, decisionMemory: Int = 1 << 20, pageBytesMax: Int = 1 << 20,
                txnLimits: ClusterConfig.Limits = .init()) {
        precondition(pageBytesMax > 0, "a page needs room for its entries")
        self.server = server
        self.pageBytesMax = pageBytesMax
        txnOpsMax = txnLimits.txnOpsMax
        txnBytesMax = txnLimits.txnBytesMax
        decided = DecisionMemory(capacity: decisionMemory)
    }

    /// Takes reloaded limits: requests from now on are judged by them (a prepared transaction keeps its locks).
    public mutating func apply(limits: ClusterConfig.Limits) {
        pageBytesMax = limits.pageBytesMax
        txnOpsMax = limits.txnOpsMax
        txnBytesMax = limits.txnBytesMax
    }

    /// Seqs prepared here and not yet decided, oldest first.
    public var inDoubt: [UInt64] { prepared.keys.sorted() }

    /// The key currently locked by a prepared transaction, if any.
    public func lockHolder(of key: [UInt8]) -> UInt64? { locks[key] }

    public func stat(nowMs: UInt64) -> ReplicaStat {
        var result = ReplicaStat(keys: store.count, digest: digest, lastCommittedSeq: lastCommittedSeq,
                                 inDoubt: inDoubtItems(nowMs: nowMs))
        result.joined = joined
        result.joinedSince = joinedSince
        result.fenceEpoch = fence.epoch
        result.fenceMaster = fence.master
        result.parkedReads = parkedKeys.count
        result.maxSeq = max(lastCommittedSeq, decided.maxRecordedSeq, prepared.keys.max() ?? 0, joinedSince)
        return result
    }

    private func inDoubtItems(nowMs: UInt64) -> [ReplicaStat.InDoubt] {
        prepared.sorted { $0.key < $1.key }.map {
            ReplicaStat.InDoubt(seq: $0.key, ageMs: nowMs >= $0.value.preparedAtMs ? nowMs - $0.value.preparedAtMs : 0,
                                recovered: $0.value.recovered, members: $0.value.members)
        }
    }

    /// Whether no transaction is prepared here (state transfer commands require that).
    var hasPrepared: Bool { !prepared.isEmpty }

    // MARK: - Snapshots

    /// Streams the state a snapshot must keep, as records (see `SnapshotRecord`), ending with the trailer.
    /// Call on a copy: the participant is a value, so a copy taken under the node's lock is a consistent cut.
    public func writeSnapshot(generation: UInt64, to body: (SnapshotRecord) throws -> Void) rethrows {
        try body(.header(generation: generation, lastCommittedSeq: lastCommittedSeq,
                         maxForgottenSeq: decided.maxForgottenSeq, joined: joined))
        if joinedSince > 0 { try body(.joinedSince(joinedSince)) }
        if resetBy > 0 { try body(.resetBy(resetBy)) }
        if fence.epoch > 0 { try body(.fence(epoch: fence.epoch, master: fence.master)) }
        for (key, entry) in store {
            try body(.entry(key: key, value: entry.value, version: entry.version, created: entry.created))
        }
        for (_, item) in prepared.sorted(by: { $0.key < $1.key }) { try body(.prepared(item.record)) }
        let outcomes = decided.entries
        for item in outcomes {
            if item.outcome == .committed && item.fingerprint != 0 {
                try body(.committed(seq: item.seq, fingerprint: item.fingerprint))
            } else {
                try body(.decided(seq: item.seq, committed: item.outcome == .committed))
            }
        }
        try body(.trailer(entries: UInt64(store.count), prepared: UInt64(prepared.count),
                          decided: UInt64(outcomes.count), digest: digest))
    }

    /// Loads one snapshot record at start-up (before any log replay). Throws if the trailer disagrees.
    public mutating func restore(_ record: SnapshotRecord, nowMs: UInt64) throws {
        switch record {
        case .header(_, let lastCommittedSeq, let maxForgottenSeq, let joined):
            self.lastCommittedSeq = lastCommittedSeq
            decided.restore(maxForgottenSeq: maxForgottenSeq)
            self.joined = joined
            replayedJoin = joined
        case .joinedSince(let seq):
            joinedSince = seq
        case .resetBy(let transfer):
            resetBy = transfer
        case .fence(let epoch, let master):
            fence.restore(MasterFence(epoch: epoch, master: master))
        case .entry(let key, let value, let version, let created):
            setEntry(key, value: value, version: version, created: created)
        case .prepared(let record):
            replay(record, nowMs: nowMs)
        case .decided(let seq, let committed):
            decided.record(seq, committed ? .committed : .aborted)
        case .committed(let seq, let fingerprint):
            decided.record(seq, .committed, fingerprint: fingerprint)
        case .trailer(let entries, let preparedCount, _, let expected):
            try checkTrailer(entries: entries, prepared: preparedCount, digest: expected, against: digest)
        case .trailerWithoutCreated(let entries, let preparedCount, _, let expected):
            try checkTrailer(entries: entries, prepared: preparedCount, digest: expected, against: digestWithoutCreated)
        }
    }

    private func checkTrailer(entries: UInt64, prepared preparedCount: UInt64, digest expected: UInt64,
                              against actual: UInt64) throws {
        guard entries == UInt64(store.count), preparedCount == UInt64(prepared.count), expected == actual else {
            throw KVError.recordMalformed("snapshot trailer does not match its content (\(store.count) keys, digest "
                + "\(String(actual, radix: 16)) vs \(entries), \(String(expected, radix: 16)))")
        }
    }

    /// Rebuilds state from one log record at start-up. Produces no actions: replay never talks.
    public mutating func replay(_ record: ReplicaRecord, nowMs: UInt64) {
        switch record {
        case .prepare, .prepareTxn:
            let item = Self.prepared(from: record, nowMs: nowMs, recovered: true)
            for key in item.locked { locks[key] = record.seq }
            prepared[record.seq] = item
        case .commit(let seq):
            if let entry = prepared.removeValue(forKey: seq) {
                release(entry, applying: seq)
                decided.record(seq, .committed, fingerprint: entry.record.operationFingerprint)
            } else {
                decided.record(seq, .committed)
            }
        case .abort(let seq):
            if let entry = prepared.removeValue(forKey: seq) { release(entry, applying: nil) }
            decided.record(seq, .aborted)
        case .load, .drop, .reset, .join:
            applySync(record)
        case .fence(let epoch, let master):
            fence.restore(MasterFence(epoch: epoch, master: master))
        }
    }

    /// Ends start-up replay. A replica whose files hold nothing at all is new: out of sync until it joins.
    public mutating func finishReplay() {
        if let replayedJoin {
            joined = replayedJoin
        } else {
            joined = !(store.isEmpty && prepared.isEmpty && decided.count == 0 && lastCommittedSeq == 0)
        }
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .readTimedOut(let id):
            guard let key = parkedKeys.removeValue(forKey: id) else { return [] }
            parkedReads[key]?.removeAll { $0.id == id }
            if parkedReads[key]?.isEmpty == true { parkedReads[key] = nil }
            let holder = locks[key].map(String.init) ?? "?"
            return [.reply(id, reply(false, .timeout, "key is locked by undecided transaction \(holder); retry later"))]
        case .request(let request, let id, let nowMs, let link):
            guard let link else { return handle(request, id: id, nowMs: nowMs) }
            switch fence.judge(request, on: link) {
            case .accept:
                return handle(request, id: id, nowMs: nowMs)
            case .advance(let newer):
                fence = newer
                return [.persist(.fence(epoch: newer.epoch, master: newer.master))] + handle(request, id: id, nowMs: nowMs)
            case .refuse(let code, let message):
                return [.reply(id, reply(false, code, message, seq: code == .fenced ? fence.epoch : request.seq))]
            }
        }
    }

    private mutating func handle(_ request: WireRequest, id: RequestID, nowMs: UInt64) -> [Action] {
        if !joined, [.get, .put, .del, .txn].contains(request.command) {
            return [.reply(id, reply(false, .notSynced, "replica \(server) is not in sync with the cluster yet",
                                     seq: request.seq))]
        }
        switch request.command {
        case .get: return read(request.key, id: id)
        case .put: return prepare(request.seq!, .put(key: request.key, value: request.value), id: id, nowMs: nowMs)
        case .del: return prepare(request.seq!, .delete(key: request.key), id: id, nowMs: nowMs)
        case .snap, .page, .load, .drop, .reset, .join: return sync(request, id: id)
        case .txn: return prepareTxn(request.seq!, request.value, id: id, nowMs: nowMs)
        case .list:
            guard joined else { return [.reply(id, reply(false, .notSynced, "replica \(server) is not in sync"))] }
            return list(prefix: request.key, after: request.value, limit: Int(min(request.seq!, 100_000)), id: id)
        case .memb:
            guard let members = Member.decode(request.value) else {
                return [.reply(id, reply(false, .badRequest, "memb value must be 'id@host:port,...'"))]
            }
            // Epochs only move forward: an older announcement still in flight (a dead master's last
            // messages, read after the new master's) must not replace a newer one.
            guard request.seq! >= membershipEpoch else {
                return [.reply(id, reply(true, .ok, "membership epoch \(request.seq!) is older than the one in force: "
                    + "ignored", seq: membershipEpoch))]
            }
            membership = members
            membershipEpoch = request.seq!
            return [.reply(id, reply(true, .ok, "\(members.count) participants from membership epoch \(request.seq!)",
                                     seq: request.seq))]
        case .hello, .auth:
            return [.reply(id, reply(false, .badRequest, "the handshake comes first on a connection, and once"))]
        case .com: return commit(request.seq!, id: id)
        case .abrt: return abort(request.seq!, id: id)
        case .qry: return query(request.seq!, id: id)
        case .stat:
            var answer = reply(true, .ok, "ok", seq: lastCommittedSeq)
            answer.stat = stat(nowMs: nowMs)
            return [.reply(id, answer)]
        }
    }

    // MARK: - Commands

    private mutating func read(_ key: [UInt8], id: RequestID) -> [Action] {
        if locks[key] != nil { return park(id, on: key, .get) }
        return [.reply(id, valueReply(for: key))]
    }

    private mutating func park(_ id: RequestID, on key: [UInt8], _ read: ParkedRead) -> [Action] {
        let alreadyParked = parkedKeys[id] != nil
        parkedReads[key, default: []].append((id, read))
        parkedKeys[id] = key
        return alreadyParked ? [] : [.awaitDecision(id)]
    }

    /// Up to `limit` committed entries with `prefix`, after `after`, in byte order. If a key in range is
    /// locked by an undecided transaction, waits for its decision first (so the listing is linearizable).
    private mutating func list(prefix: [UInt8], after: [UInt8], limit: Int, id: RequestID) -> [Action] {
        func inRange(_ key: [UInt8]) -> Bool {
            key.starts(with: prefix) && (after.isEmpty || after.lexicographicallyPrecedes(key))
        }
        if let locked = locks.keys.first(where: inRange) {
            return park(id, on: locked, .list(prefix: prefix, after: after, limit: limit))
        }
        var entries: [SyncPage.Entry] = []
        var budget = SyncPageBudget(bytesMax: pageBytesMax)
        var done = true
        keyIndex.forEach(prefix: prefix, after: after) { key in
            let entry = store[key]!
            guard entries.count < limit, budget.admit(key: key, value: entry.value) else {
                done = false
                return false
            }
            entries.append(SyncPage.Entry(key: key, value: entry.value, version: entry.version, created: entry.created))
            return true
        }
        var answer = reply(true, .ok, "\(entries.count) keys")
        answer.page = SyncPage(entries: entries, done: done)
        return [.reply(id, answer)]
    }

    /// The answer to a prepare for a seq this replica already knows, or nil for a new one.
    private mutating func repeatedPrepare(_ seq: UInt64, _ record: ReplicaRecord, id: RequestID) -> [Action]? {
        if let existing = prepared[seq] {
            guard existing.record.withoutMembers == record.withoutMembers else {
                return [.reply(id, reply(false, .conflict, "transaction \(seq) already prepared another write", seq: seq))]
            }
            return [.awaitDurable, .reply(id, reply(true, .ok, "prepared", seq: seq))]
        }
        switch decided[seq] {
        case .aborted:
            return [.reply(id, reply(false, .aborted, "transaction \(seq) was already aborted here", seq: seq))]
        case .committed:
            // Only a duplicate of the very operation that committed gets its yes again: a seq reused for another
            // one (by a master whose decision log was lost or rewound) would be answered "committed" and applied
            // nowhere. A commit remembered without its fingerprint (its prepare was not seen here, or a snapshot of
            // an earlier version) is taken for a duplicate, as before.
            if let fingerprint = decided.fingerprint(of: seq), fingerprint != record.operationFingerprint {
                return [.reply(id, reply(false, .aborted, "transaction \(seq) already committed another write here "
                    + "(was the seq reused?)", seq: seq))]
            }
            return [.awaitDurable, .reply(id, reply(true, .ok, "already committed", seq: seq))]
        case nil:
            if decided.mayHaveForgotten(seq) {
                return [.reply(id, reply(false, .aborted, "transaction \(seq) is too old to prepare here", seq: seq))]
            }
            return nil
        }
    }

    /// Votes no because `key` is locked by another transaction (first one wins).
    private mutating func conflict(_ seq: UInt64, _ key: [UInt8], id: RequestID) -> [Action]? {
        guard let holder = locks[key] else { return nil }
        decided.record(seq, .aborted)
        return [.reply(id, reply(false, .conflict, "key is locked by transaction \(holder)", seq: seq))]
    }

    /// Votes no because one of `writes` already holds a version at or above `seq`: committing would take its
    /// version back (versions are the seqs that wrote them and must grow in commit order). The master's seqs reach
    /// a replica in order on one connection, so this is a delayed or replayed prepare; nothing is written.
    private mutating func superseded(_ seq: UInt64, _ writes: [WriteOp], id: RequestID) -> [Action]? {
        guard let op = writes.first(where: { (store[$0.key]?.version ?? 0) >= seq }),
              let version = store[op.key]?.version else { return nil }
        decided.record(seq, .aborted)
        return [.reply(id, reply(false, .superseded, "key already holds version \(version), written after transaction "
            + "\(seq) began; nothing was written, retry", seq: seq))]
    }

    private mutating func prepare(_ seq: UInt64, _ op: WriteOp, id: RequestID, nowMs: UInt64) -> [Action] {
        let record = ReplicaRecord.prepare(seq: seq, op: op, members: membership)
        if let answer = repeatedPrepare(seq, record, id: id) { return answer }
        if let answer = conflict(seq, op.key, id: id) { return answer }
        if let answer = superseded(seq, [op], id: id) { return answer }
        if case .delete(let key) = op, store[key] == nil {
            decided.record(seq, .aborted)
            return [.reply(id, reply(false, .notFound, "key not found", seq: seq))]
        }
        precondition(locks[op.key] == nil, "a key is locked by at most one prepared transaction")
        locks[op.key] = seq
        prepared[seq] = Prepared(ops: [op], locked: [op.key], record: record, preparedAtMs: nowMs, members: membership)
        var answer = reply(true, .ok, "prepared", seq: seq)
        answer.created = store[op.key]?.created ?? seq
        return [.persist(record), .reply(id, answer)]
    }

    /// Prepares a multi-key transaction: lock every key (sorted), evaluate the compares, vote with the branch.
    private mutating func prepareTxn(_ seq: UInt64, _ json: [UInt8], id: RequestID, nowMs: UInt64) -> [Action] {
        let spec: TxnSpec
        do {
            spec = try TxnSpec.parse(try JSONValue.parse(json).get(), base64: true)
        } catch {
            return [.reply(id, reply(false, .badRequest, "malformed transaction: \(error)", seq: seq))]
        }
        guard spec.opCount <= txnOpsMax else {
            return [.reply(id, reply(false, .badRequest, "transaction has \(spec.opCount) compares and operations; the "
                + "limit is \(txnOpsMax) (limits.txn_ops_max)", seq: seq))]
        }
        guard spec.sizeBytes <= txnBytesMax else {
            return [.reply(id, reply(false, .badRequest, "transaction holds \(spec.sizeBytes) bytes of keys and values; "
                + "the limit is \(txnBytesMax) (limits.txn_bytes_max)", seq: seq))]
        }
        let keys = spec.keys
        let succeeded = spec.compare.allSatisfy { $0.holds(for: store[$0.key]) }
        let branch = succeeded ? spec.success : spec.failure
        var writes: [WriteOp] = []
        var reads: [TxnResult.Read] = []
        var writeCreated: [UInt64] = []
        for op in branch {
            switch op {
            case .put(let key, let value):
                writes.append(.put(key: key, value: value))
                writeCreated.append(store[key]?.created ?? seq)
            case .delete(let key):
                if store[key] != nil { writes.append(.delete(key: key)) }
                writeCreated.append(store[key]?.created ?? 0)
            case .get(let key): reads.append(TxnResult.Read(key: key, entry: store[key]))
            }
        }
        let record = ReplicaRecord.prepareTxn(seq: seq, ops: writes, locked: keys, members: membership)
        if let answer = repeatedPrepare(seq, record, id: id) { return answer }
        for key in keys {
            if let answer = conflict(seq, key, id: id) { return answer }
        }
        if let answer = superseded(seq, writes, id: id) { return answer }
        for key in keys {
            precondition(locks[key] == nil, "a key is locked by at most one prepared transaction")
            locks[key] = seq
        }
        prepared[seq] = Prepared(ops: writes, locked: keys, record: record, preparedAtMs: nowMs, members: membership)
        var answer = reply(true, .ok, succeeded ? "prepared: compares hold" : "prepared: compares fail", seq: seq)
        answer.txn = TxnResult(succeeded: succeeded, reads: reads, writeCreated: writeCreated)
        return [.persist(record), .reply(id, answer)]
    }

    private static func prepared(from record: ReplicaRecord, nowMs: UInt64, recovered: Bool) -> Prepared {
        switch record {
        case .prepare(_, let op, let members):
            return Prepared(ops: [op], locked: [op.key], record: record, preparedAtMs: nowMs, recovered: recovered,
                            members: members)
        case .prepareTxn(_, let ops, let locked, let members):
            return Prepared(ops: ops, locked: locked, record: record, preparedAtMs: nowMs, recovered: recovered,
                            members: members)
        default:
            preconditionFailure("not a prepare record: \(record)")
        }
    }

    /// Releases the locks of a decided transaction, applying its writes if `seq` is given (commit).
    /// Returns the keys whose parked reads may now be answered.
    @discardableResult
    private mutating func release(_ entry: Prepared, applying seq: UInt64?) -> [[UInt8]] {
        for key in entry.locked { locks[key] = nil }
        if let seq { for op in entry.ops { apply(seq: seq, op: op) } }
        return entry.locked
    }

    private mutating func commit(_ seq: UInt64, id: RequestID) -> [Action] {
        guard let entry = prepared.removeValue(forKey: seq) else {
            switch decided[seq] {
            case .committed:
                // The ack must not overtake the durability of the first COMMIT record (it may still be queued):
                // persisting it again costs a tiny record and orders this ack behind that fsync.
                return [.persist(.commit(seq: seq)), .reply(id, reply(true, .ok, "already committed", seq: seq))]
            case .aborted:
                return [.reply(id, reply(false, .aborted, "transaction \(seq) was aborted here; cannot commit", seq: seq))]
            case nil:
                return [.reply(id, reply(false, .unknownTransaction, "transaction \(seq) is not prepared here", seq: seq))]
            }
        }
        let keys = release(entry, applying: seq)
        decided.record(seq, .committed, fingerprint: entry.record.operationFingerprint)
        return [.persist(.commit(seq: seq)), .reply(id, reply(true, .ok, "committed", seq: seq))]
            + keys.flatMap { wakeReads($0) }
    }

    private mutating func abort(_ seq: UInt64, id: RequestID) -> [Action] {
        if let entry = prepared.removeValue(forKey: seq) {
            let keys = release(entry, applying: nil)
            decided.record(seq, .aborted)
            return [.persist(.abort(seq: seq)), .reply(id, reply(true, .ok, "aborted", seq: seq))]
                + keys.flatMap { wakeReads($0) }
        }
        switch decided[seq] {
        case .committed:
            return [.reply(id, reply(false, .conflict, "transaction \(seq) already committed here; cannot abort", seq: seq))]
        case .aborted:
            return [.reply(id, reply(true, .ok, "already aborted", seq: seq))]
        case nil:
            // Not prepared here (yet): remember the abort durably so a late prepare votes no.
            decided.record(seq, .aborted)
            return [.persist(.abort(seq: seq)), .reply(id, reply(true, .ok, "aborted", seq: seq))]
        }
    }

    private mutating func query(_ seq: UInt64, id: RequestID) -> [Action] {
        if prepared[seq] != nil {
            return [.reply(id, reply(true, .inDoubt, "prepared here; outcome unknown here", seq: seq))]
        }
        switch decided[seq] {
        case .committed:
            return [.reply(id, reply(true, .committed, "committed", seq: seq))]
        case .aborted:
            return [.reply(id, reply(true, .aborted, "aborted", seq: seq))]
        case nil:
            guard joined else {
                return [.reply(id, reply(false, .notSynced, "replica \(server) is not in sync: it cannot tell whether "
                    + "transaction \(seq) was prepared here", seq: seq))]
            }
            if seq <= joinedSince {
                return [.reply(id, reply(false, .unknownTransaction, "transaction \(seq) may have run before this replica "
                    + "joined at \(joinedSince)", seq: seq))]
            }
            if decided.mayHaveForgotten(seq) {
                return [.reply(id, reply(false, .unknownTransaction,
                                         "transaction \(seq) is too old to be remembered here", seq: seq))]
            }
            decided.record(seq, .aborted)
            return [.persist(.abort(seq: seq)),
                    .reply(id, reply(true, .aborted, "never prepared here; recorded as aborted", seq: seq))]
        }
    }

    // MARK: - Helpers

    mutating func apply(seq: UInt64, op: WriteOp) {
        locks[op.key] = nil
        lastCommittedSeq = max(lastCommittedSeq, seq)
        switch op {
        case .put(let key, let value):
            setEntry(key, value: value, version: seq, created: store[key]?.created ?? seq)
        case .delete(let key):
            removeEntry(key)
        }
    }

    /// Sets `key` to a new entry and keeps `digest` in step: the replaced entry's term out, the new one's in.
    /// Every write to `store` goes through here or `removeEntry`, so each entry's cached term is right.
    mutating func setEntry(_ key: [UInt8], value: [UInt8], version: UInt64, created: UInt64) {
        let hash = ContentDigest.entryHash(key: key, value: value, version: version)
        let entry = Entry(value: value, version: version, created: created, entryHash: hash)
        if let old = store.updateValue(entry, forKey: key) {
            digest &-= old.digestTerm
            digestWithoutCreated &-= old.entryHash
        } else {
            keyIndex.insert(key)
        }
        digest &+= entry.digestTerm
        digestWithoutCreated &+= hash
    }

    /// Removes `key`, taking its term out of `digest`.
    mutating func removeEntry(_ key: [UInt8]) {
        if let old = store.removeValue(forKey: key) {
            digest &-= old.digestTerm
            digestWithoutCreated &-= old.entryHash
            keyIndex.remove(key)
        }
    }

    private mutating func wakeReads(_ key: [UInt8]) -> [Action] {
        guard let waiting = parkedReads.removeValue(forKey: key) else { return [] }
        var actions: [Action] = []
        for (id, read) in waiting {
            parkedKeys[id] = nil
            switch read {
            case .get:
                actions.append(.reply(id, valueReply(for: key)))
            case .list(let prefix, let after, let limit):
                // May park again on another key still locked in range; the original timer keeps running.
                actions += list(prefix: prefix, after: after, limit: limit, id: id).filter { action in
                    if case .awaitDecision = action { return false }
                    return true
                }
                if parkedKeys[id] != nil { continue }
            }
        }
        return actions
    }

    private func valueReply(for key: [UInt8]) -> WireReply {
        guard let entry = store[key] else { return reply(false, .notFound, "key not found") }
        var answer = reply(true, .ok, "", seq: entry.version)
        answer.value = entry.value
        answer.created = entry.created
        return answer
    }

    func reply(_ status: Bool, _ code: ReplyCode, _ message: String, seq: UInt64? = nil) -> WireReply {
        WireReply(status: status, code: code, message: message, seq: seq, server: server)
    }
}
