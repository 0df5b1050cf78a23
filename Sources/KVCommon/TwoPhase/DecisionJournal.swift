// DecisionJournal: the rules of the master's decision log, as a value.
//
// Files: generations `decisions-<g>.log`, appended in order; only the newest receives appends. Records: COMMIT
// (forced: `com` may leave only once it is durable) and END (lazy: every participant acknowledged).
// Compaction: when the current generation passes `compactBytes`, the log rotates to g+1, copies every COMMIT
// without END into it (forced), and only once that copy is durable deletes the older generations.
// Start-up: every generation is read in order; COMMITs without END are the pending commits. When more than one
// generation is found, the start-up finishes what an interrupted compaction began: copy, make durable, delete
// (in that order: the copies a crash cut short live only in memory until they are durable again).
//
// Invariants:
// - A generation is deleted only after every COMMIT without END it holds is durable in a newer one.
// - `wasCommitted(seq)` is true exactly for durable COMMITs without END and recently ended ones.

/// The decision log's bookkeeping: which commits are logged, durable, ended; when to compact; what to delete.
public struct DecisionJournal {
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

    public private(set) var generation: UInt64
    /// Generations on disk older than `generation`, deleted once a compaction's copy is durable.
    public private(set) var older: [UInt64]
    /// COMMITs appended (durable or not) without END: what a compaction must carry over.
    public private(set) var logged: [UInt64: [String]] = [:]
    /// Durable COMMITs without END: what in-doubt resolution and redelivery rely on.
    public private(set) var pending: [UInt64: [String]] = [:]
    /// Commits that ended recently (bounded): a replica that lost its own COMMIT record still learns "commit".
    private var ended: DecisionMemory
    /// Record bytes appended to the current generation (what triggers a compaction).
    public private(set) var sizeBytes = 0
    public let compactBytes: Int
    /// The generation a compaction is copying into, until its copy is durable.
    public private(set) var compacting: UInt64?

    /// Rebuilds the journal from the generations found at start-up (oldest first).
    public init(recovered: [Generation], compactBytes: Int, endedCapacity: Int = 1 << 20) {
        self.compactBytes = compactBytes
        ended = DecisionMemory(capacity: endedCapacity)
        for file in recovered {
            for record in file.records {
                switch record {
                case .commit(let seq, let participants): pending[seq] = participants
                case .end(let seq): if pending.removeValue(forKey: seq) != nil { ended.record(seq, .committed) }
                }
            }
        }
        logged = pending
        generation = recovered.last?.number ?? 1
        older = recovered.dropLast().map(\.number)
        sizeBytes = recovered.last.map { $0.records.reduce(0) { $0 + Self.bytes(of: $1) } } ?? 0
    }

    /// The file actions start-up needs (after replay): none for a single generation. Older generations left
    /// behind mean a compaction was interrupted, and the newest may lack some copies: start-up compacts the same
    /// way (copy into a new generation, make it durable, only then delete them), never deleting first.
    public mutating func startUp() -> [FileAction] {
        guard !older.isEmpty else { return [] }
        return compact()
    }

    /// Logs the COMMIT of `seq` (forced); compacts first if the generation is full.
    public mutating func commit(seq: UInt64, participants: [String]) -> [FileAction] {
        let record = DecisionRecord.commit(seq: seq, participants: participants)
        logged[seq] = participants
        sizeBytes += Self.bytes(of: record)
        var actions: [FileAction] = [.append([record], forced: .commit(seq))]
        actions += compactIfFull()
        return actions
    }

    /// The COMMIT of `seq` is durable.
    public mutating func commitDurable(seq: UInt64) {
        if let participants = logged[seq] { pending[seq] = participants }
    }

    /// Every participant acknowledged `seq`: END (lazy), and the seq is remembered as ended.
    public mutating func end(seq: UInt64) -> [FileAction] {
        if pending.removeValue(forKey: seq) != nil { ended.record(seq, .committed) }
        guard logged.removeValue(forKey: seq) != nil else { return [] }
        let record = DecisionRecord.end(seq: seq)
        sizeBytes += Self.bytes(of: record)
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
        guard compacting == nil, sizeBytes >= compactBytes else { return [] }
        return compact()
    }

    private mutating func compact() -> [FileAction] {
        older.append(generation)
        generation += 1
        compacting = generation
        let carried = logged.sorted { $0.key < $1.key }.map { DecisionRecord.commit(seq: $0.key, participants: $0.value) }
        sizeBytes = carried.reduce(0) { $0 + Self.bytes(of: $1) }
        var actions: [FileAction] = [.rotate(generation: generation)]
        actions.append(.append(carried, forced: .compaction(generation)))
        return actions
    }

    /// The bytes `record` takes in the file, frame header included (computed, not encoded: one per write).
    static func bytes(of record: DecisionRecord) -> Int {
        switch record {
        case .commit(_, let participants): return 8 + 13 + participants.reduce(0) { $0 + 4 + $1.utf8.count }
        case .end: return 8 + 9
        }
    }
}

/// Identifies a forced decision-log append whose durability the master waits for.
public enum DecisionLogToken: Hashable, Sendable {
    case commit(UInt64)
    case compaction(UInt64)
}
