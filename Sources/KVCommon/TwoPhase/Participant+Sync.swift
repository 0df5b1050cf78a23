// State transfer: how a replica that is not in sync gets the committed state of a healthy one.
//
// On the healthy source: `snap` opens a consistent snapshot (a copy of the key space: the store is a value,
// so the copy costs nothing until the next write) and `page` reads it in pages. On the replica being synced:
// `reset` empties it and marks it out of sync, `load`/`drop` install or remove committed entries, and `join`
// marks it in sync again. Every change is persisted like any other record, so a crash mid-transfer leaves a
// replica that is still out of sync (and is reset and synced again), never one that wrongly claims to be in sync.

/// The open `snap` snapshots of a replica, bounded; the oldest is closed when a new one would exceed the bound.
struct SyncScans {
    struct Scan {
        var store: [[UInt8]: Participant.Entry]
        var index: Dictionary<[UInt8], Participant.Entry>.Index
    }

    static let openMax = 4
    private(set) var open: [UInt64: Scan] = [:]
    private var nextID: UInt64 = 1

    mutating func begin(_ store: [[UInt8]: Participant.Entry]) -> UInt64 {
        let id = nextID
        nextID += 1
        if open.count >= Self.openMax, let oldest = open.keys.min() { open[oldest] = nil }
        open[id] = Scan(store: store, index: store.startIndex)
        return id
    }

    /// The next page of snapshot `id`, or nil if there is no such open snapshot.
    mutating func next(_ id: UInt64, entriesMax: Int, bytesMax: Int) -> SyncPage? {
        guard var scan = open[id] else { return nil }
        var entries: [SyncPage.Entry] = []
        var budget = SyncPageBudget(bytesMax: bytesMax)
        while scan.index != scan.store.endIndex, entries.count < entriesMax {
            let (key, entry) = scan.store[scan.index]
            guard budget.admit(key: key, value: entry.value) else { break }
            entries.append(SyncPage.Entry(key: key, value: entry.value, version: entry.version, created: entry.created))
            scan.index = scan.store.index(after: scan.index)
        }
        let done = scan.index == scan.store.endIndex
        open[id] = done ? nil : scan
        return SyncPage(entries: entries, done: done)
    }
}

/// Fills a page up to its size on the wire: an entry is admitted while the page stays within `bytesMax`, and
/// the first one always is (so a page at the key and value limits still moves).
struct SyncPageBudget {
    let bytesMax: Int
    private var used = 0

    init(bytesMax: Int) { self.bytesMax = bytesMax }

    mutating func admit(key: [UInt8], value: [UInt8]) -> Bool {
        let bytes = ClusterConfig.Limits.wireEntryBytes(key: key.count, value: value.count)
        guard used == 0 || used + bytes <= bytesMax else { return false }
        used += bytes
        return true
    }
}

extension Participant {
    static let pageEntriesMax = 1000

    mutating func sync(_ request: WireRequest, id: RequestID) -> [Action] {
        switch request.command {
        case .snap:
            guard joined else { return [.reply(id, reply(false, .notSynced, "an out-of-sync replica cannot be a source"))] }
            let scan = scans.begin(store)
            var answer = reply(true, .ok, "snapshot \(scan) of \(store.count) keys opened", seq: scan)
            answer.stat = ReplicaStat(keys: store.count, digest: digest, lastCommittedSeq: lastCommittedSeq, inDoubt: [])
            return [.reply(id, answer)]
        case .page:
            guard let page = scans.next(request.seq!, entriesMax: Self.pageEntriesMax, bytesMax: pageBytesMax) else {
                return [.reply(id, reply(false, .badRequest, "no open snapshot \(request.seq!) (open one with ;snap;;)"))]
            }
            var answer = reply(true, .ok, "\(page.entries.count) entries", seq: request.seq)
            answer.page = page
            return [.reply(id, answer)]
        case .reset:
            guard !hasPrepared else {
                return [.reply(id, reply(false, .conflict, "in-doubt transactions must be resolved before a reset"))]
            }
            let record = ReplicaRecord.reset(transfer: request.seq ?? 0)
            applySync(record)
            return [.persist(record), .reply(id, reply(true, .ok, "reset: empty and out of sync until join"))]
        case .load:
            guard !joined else { return [.reply(id, reply(false, .badRequest, "load needs an out-of-sync replica"))] }
            guard let colon = request.value.firstIndex(of: UInt8(ascii: ":")),
                  let created = UInt64(String(decoding: request.value[..<colon], as: UTF8.self))
            else { return [.reply(id, reply(false, .badRequest, "load value must be '<created seq>:<value>'"))] }
            let record = ReplicaRecord.load(key: request.key, value: Array(request.value[(colon + 1)...]),
                                            version: request.seq!, created: created)
            applySync(record)
            return [.persist(record), .reply(id, reply(true, .ok, "loaded", seq: request.seq))]
        case .drop:
            guard !joined else { return [.reply(id, reply(false, .badRequest, "drop needs an out-of-sync replica"))] }
            applySync(.drop(key: request.key))
            return [.persist(.drop(key: request.key)), .reply(id, reply(true, .ok, "dropped"))]
        case .join:
            // The reply's seq is the join point in force, which the master records as this copy's identity.
            if joined { return [.reply(id, reply(true, .ok, "already in sync", seq: joinedSince))] }
            // A transfer's join ends only the transfer that reset this replica: one that restarted empty (or was
            // reset by another) since would join without the data it was sent.
            if !request.value.isEmpty {
                guard let transfer = UInt64(String(decoding: request.value, as: UTF8.self)), transfer == resetBy else {
                    return [.reply(id, reply(false, .badRequest, "join for transfer \(String(decoding: request.value, as: UTF8.self)), "
                        + "but this replica was reset by \(resetBy == 0 ? "none" : "transfer \(resetBy)") since"))]
                }
            }
            let record = ReplicaRecord.join(since: request.seq ?? 0)
            applySync(record)
            return [.persist(record),
                    .reply(id, reply(true, .ok, "joined: in sync, voting and serving reads", seq: joinedSince))]
        default:
            return [.reply(id, reply(false, .badRequest, "not a state-transfer command"))]
        }
    }

    /// Applies a state-transfer record, live or during replay.
    mutating func applySync(_ record: ReplicaRecord) {
        switch record {
        case .load(let key, let value, let version, let created):
            setEntry(key, value: value, version: version, created: created)
            lastCommittedSeq = max(lastCommittedSeq, version)
        case .drop(let key):
            removeEntry(key)
        case .reset(let transfer):
            resetBy = transfer
            store = [:]
            keyIndex.removeAll()
            digest = 0
            digestWithoutCreated = 0
            lastCommittedSeq = 0
            joined = false
            replayedJoin = false
        case .join(let since):
            joined = true
            replayedJoin = true
            joinedSince = since
        case .prepare, .prepareTxn, .commit, .abort, .fence:
            break
        }
    }
}
