// DecisionJournal: the rules of the master's decision log, as a value.
//
// Files: generations `decisions-<g>.log`, appended in order; only the newest receives appends. Records: COMMIT
// (forced: `com` may leave only once it is durable) and END (lazy: every participant acknowledged); a COMMIT
// carries the transaction's change index and changes, which watchers are served from (`ChangeHistory`).
// Indexes: each COMMIT gets the next index when it is appended; appends become durable in order, so indexes
// become durable in order, and a change is published (handed to watchers) only once its COMMIT is durable and
// every lower index is published.
// Compaction: once the current generation has grown by `compactBytes` since it began, the log rotates to g+1,
// writes a HORIZON (compacted-through and last index), copies the kept history (HISTORY records, or COMMIT for
// those without END) and every other COMMIT without END into it (forced), and only once that copy is durable
// deletes the older generations.
// Start-up: every generation is read in order; COMMITs without END are the pending commits; the history is
// every change above the newest HORIZON. When more than one generation is found, the start-up finishes what
// an interrupted compaction began: copy, make durable, delete (in that order: the copies a crash cut short live
// only in memory until they are durable again).
//
// Invariants:
// - A generation is deleted only after every COMMIT without END and every kept change it holds is durable in a
//   newer one.
// - `wasCommitted(seq)` is true exactly for durable COMMITs without END and recently ended ones.
// - An index is issued once: a restart continues above every index any record names.
// - Published indexes ascend by one; the history holds exactly the published changes (within its bounds).

/// The decision log's bookkeeping: which commits are logged, durable, ended; the change history; when to
/// compact; what to delete.
public struct DecisionJournal {
    public typealias Change = ChangeHistory.Change

    /// One file action for the executor, in order.
    public enum FileAction: Equatable {
        /// Append records to the current generation; `forced` ones report `.logged` once durable.
        case append([DecisionRecord], forced: DecisionLogToken?)
        /// Switch to a new, empty generation (everything appended before stays in the old one).
        case rotate(generation: UInt64)
        /// Remove an old generation's file.
        case delete(generation: UInt64)
    }

    /// What a generation file held at start-up, in order.
    public struct Generation: Equatable {
        public var number: UInt64
        public var records: [DecisionRecord]
        public init(number: UInt64, records: [DecisionRecord]) {
            self.number = number
            self.records = records
        }
    }

    /// A COMMIT appended and not ended: its participants and its change index.
    public struct Logged: Equatable, Sendable {
        public var participants: [String]
        public var index: UInt64
    }

    /// A COMMIT appended whose index is not published yet.
    private struct Unpublished {
        var seq: UInt64
        var index: UInt64
        var changes: [Change]
        var durable = false
    }

    public private(set) var generation: UInt64
    /// Generations on disk older than `generation`, deleted once a compaction's copy is durable.
    public private(set) var older: [UInt64]
    /// COMMITs appended (durable or not) without END: what a compaction must carry over.
    public private(set) var logged: [UInt64: Logged] = [:]
    /// Durable COMMITs without END: what in-doubt resolution and redelivery rely on.
    public private(set) var pending: [UInt64: [String]] = [:]
    /// Commits that ended recently (bounded): a replica that lost its own COMMIT record still learns "commit".
    private var ended: DecisionMemory
    /// The published changes, bounded (what watchers resume from).
    public private(set) var history: ChangeHistory
    /// The last index issued (published or not).
    public private(set) var lastIssuedIndex: UInt64
    /// Appended COMMITs in index order, until they are published.
    private var unpublished: [Unpublished] = []
    /// Record bytes appended to the current generation, and how many of them a compaction copied in.
    public private(set) var sizeBytes = 0
    private var carriedBytes = 0
    public let compactBytes: Int
    /// The generation a compaction is copying into, until its copy is durable.
    public private(set) var compacting: UInt64?

    /// Rebuilds the journal from the generations found at start-up (oldest first). The history keeps at most
    /// `historyMax` changes and `historyBytesMax` bytes of them.
    public init(recovered: [Generation], compactBytes: Int, historyMax: Int = 10_000, historyBytesMax: Int = 16 << 20,
                endedCapacity: Int = 1 << 20) {
        self.compactBytes = compactBytes
        ended = DecisionMemory(capacity: endedCapacity)
        var horizon: UInt64 = 0
        var last: UInt64 = 0
        var indexed: [UInt64: [Change]] = [:]
        for file in recovered {
            for record in file.records {
                switch record {
                case .commit(let seq, let participants, let index, let changes):
                    pending[seq] = participants
                    logged[seq] = Logged(participants: participants, index: index)
                    if index > 0 { indexed[index] = changes }
                    last = max(last, index)
                case .end(let seq):
                    if pending.removeValue(forKey: seq) != nil { ended.record(seq, .committed) }
                    logged[seq] = nil
                case .history(let index, let changes):
                    indexed[index] = changes
                    last = max(last, index)
                case .horizon(let compactedThrough, let lastIndex):
                    horizon = max(horizon, compactedThrough)
                    last = max(last, lastIndex)
                }
            }
        }
        // Each generation holds every change above its own horizon (a compaction copies them in first), and an
        // older one is deleted only once a newer one's copy is durable: above the newest horizon nothing is missing.
        history = ChangeHistory(countMax: historyMax, bytesMax: historyBytesMax, startIndex: horizon)
        for index in indexed.keys.sorted() where index > horizon {
            history.skip(to: index - 1)
            history.append(index: index, indexed[index]!)
        }
        history.skip(to: last)
        lastIssuedIndex = last
        generation = recovered.last?.number ?? 1
        older = recovered.dropLast().map(\.number)
        sizeBytes = recovered.last.map { $0.records.reduce(0) { $0 + $1.fileBytes } } ?? 0
    }

    /// The file actions start-up needs (after replay): none for a single generation. Older generations left
    /// behind mean a compaction was interrupted, and the newest may lack some copies: start-up compacts the same
    /// way (copy into a new generation, make it durable, only then delete them), never deleting first.
    public mutating func startUp() -> [FileAction] {
        guard !older.isEmpty else { return [] }
        return compact()
    }

    /// Logs the COMMIT of `seq` (forced) with the next index and its changes; compacts first if the generation is
    /// full. Returns the actions and the index.
    public mutating func commit(seq: UInt64, participants: [String], changes: [Change] = []) -> (actions: [FileAction], index: UInt64) {
        lastIssuedIndex += 1
        let index = lastIssuedIndex
        var indexed = changes
        for position in indexed.indices { indexed[position].index = index }
        let record = DecisionRecord.commit(seq: seq, participants: participants, index: index, changes: indexed)
        logged[seq] = Logged(participants: participants, index: index)
        unpublished.append(Unpublished(seq: seq, index: index, changes: indexed))
        sizeBytes += record.fileBytes
        var actions: [FileAction] = [.append([record], forced: .commit(seq))]
        actions += compactIfFull()
        return (actions, index)
    }

    @discardableResult
    /// The COMMIT of `seq` is durable. Returns the indexes that become published, in order, with their seqs and
    /// changes (the history holds them from now on).
    public mutating func commitDurable(seq: UInt64) -> [(index: UInt64, seq: UInt64, changes: [Change])] {
        if let entry = logged[seq] { pending[seq] = entry.participants }
        guard let position = unpublished.firstIndex(where: { $0.seq == seq }) else { return [] }
        unpublished[position].durable = true
        var published: [(index: UInt64, seq: UInt64, changes: [Change])] = []
        var count = 0
        while count < unpublished.count, unpublished[count].durable {
            let entry = unpublished[count]
            history.append(index: entry.index, entry.changes)
            published.append((entry.index, entry.seq, entry.changes))
            count += 1
        }
        unpublished.removeFirst(count)
        return published
    }

    /// Every participant acknowledged `seq`: END (lazy), and the seq is remembered as ended.
    public mutating func end(seq: UInt64) -> [FileAction] {
        if pending.removeValue(forKey: seq) != nil { ended.record(seq, .committed) }
        guard logged.removeValue(forKey: seq) != nil else { return [] }
        let record = DecisionRecord.end(seq: seq)
        sizeBytes += record.fileBytes
        return [.append([record], forced: nil)]
    }

    /// A compaction's copy into `generation` is durable: the older generations may go.
    public mutating func compactionDurable(generation copied: UInt64) -> [FileAction] {
        guard compacting == copied else { return [] }
        compacting = nil
        let stale = older
        older = []
        return stale.map { .delete(generation: $0) }
    }

    /// Whether `seq` is known to have committed: durable and unacknowledged, or acknowledged recently.
    public func wasCommitted(_ seq: UInt64) -> Bool { pending[seq] != nil || ended[seq] == .committed }

    private mutating func compactIfFull() -> [FileAction] {
        // Measured from what the last compaction copied in: a history larger than `compactBytes` would otherwise
        // make every append compact.
        guard compacting == nil, sizeBytes - carriedBytes >= compactBytes else { return [] }
        return compact()
    }

    /// A compaction now, whatever the size (tests).
    mutating func compactNowForTest() -> [FileAction] { compact() }

    private mutating func compact() -> [FileAction] {
        older.append(generation)
        generation += 1
        compacting = generation
        let carried = carriedRecords()
        sizeBytes = carried.reduce(0) { $0 + $1.fileBytes }
        carriedBytes = sizeBytes
        return [.rotate(generation: generation), .append(carried, forced: .compaction(generation))]
    }

    /// What a new generation must hold, in index order: the horizon, then every COMMIT without END (with its
    /// changes while they are not published or still kept) and every other kept change.
    private func carriedRecords() -> [DecisionRecord] {
        var changesOf: [UInt64: [Change]] = [:]
        for change in history.kept { changesOf[change.index, default: []].append(change) }
        for entry in unpublished { changesOf[entry.index] = entry.changes }
        var records: [(index: UInt64, seq: UInt64, record: DecisionRecord)] = []
        var committed = Set<UInt64>()
        for (seq, entry) in logged {
            committed.insert(entry.index)
            let record = DecisionRecord.commit(seq: seq, participants: entry.participants, index: entry.index,
                                               changes: changesOf[entry.index] ?? [])
            records.append((entry.index, seq, record))
        }
        for (index, changes) in changesOf where !committed.contains(index) {
            records.append((index, 0, .history(index: index, changes: changes)))
        }
        records.sort { ($0.index, $0.seq) < ($1.index, $1.seq) }
        return [.horizon(compactedThrough: history.compactedThrough, lastIndex: lastIssuedIndex)] + records.map(\.record)
    }
}

/// Identifies a forced decision-log append whose durability the master waits for.
public enum DecisionLogToken: Hashable, Sendable {
    case commit(UInt64)
    case compaction(UInt64)
}
