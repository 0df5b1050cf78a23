/// The outcomes a participant remembers for transactions it no longer holds, so duplicate or late
/// messages get consistent answers (`com` twice acks twice; a prepare after an abort votes no). A commit is
/// remembered with a fingerprint of its operation, so a prepare that reuses the seq for another operation (a
/// master that lost its decision log, say) is told no rather than "already committed".
/// Bounded: once `capacity` is reached the smallest seqs are forgotten first (the oldest, for one master's seqs),
/// so the watermark below which "never seen" cannot be claimed stays below every seq still remembered: no single
/// message, however large its seq, can move it (a seq recorded first and forgotten first could).
public struct DecisionMemory: Sendable {
    public enum Outcome: Equatable, Sendable { case committed, aborted }

    /// The outcome packed with the fingerprint: the top bit set for a commit, the low 31 bits its fingerprint
    /// (0: not known, as after a snapshot written by an earlier version). Four bytes a seq, not sixteen.
    private var outcomes: [UInt64: UInt32] = [:]
    /// The remembered seqs as a binary min-heap: the next to forget at the root. Seqs mostly arrive in order,
    /// so adding one usually costs one comparison.
    private var heap: [UInt64] = []
    public let capacity: Int
    /// The largest seq ever forgotten. An unknown seq at or below it may have been decided here once.
    public private(set) var maxForgottenSeq: UInt64 = 0
    /// The largest seq ever recorded (forgotten or not): a master's seqs must stay above it.
    public private(set) var maxRecordedSeq: UInt64 = 0

    private static let committedBit: UInt32 = 1 << 31

    public init(capacity: Int) {
        precondition(capacity > 0, "DecisionMemory capacity must be positive")
        self.capacity = capacity
    }

    public subscript(seq: UInt64) -> Outcome? {
        outcomes[seq].map { $0 & Self.committedBit != 0 ? .committed : .aborted }
    }

    /// The fingerprint of a remembered commit's operation, nil if it aborted, is unknown, or was not recorded.
    public func fingerprint(of seq: UInt64) -> UInt32? {
        guard let packed = outcomes[seq], packed & Self.committedBit != 0, packed != Self.committedBit else { return nil }
        return packed & ~Self.committedBit
    }

    /// Whether an unknown `seq` might be one this memory has forgotten (so "never seen" cannot be claimed).
    public func mayHaveForgotten(_ seq: UInt64) -> Bool { seq <= maxForgottenSeq }

    /// Every remembered outcome (for snapshots, in no particular order), with a commit's fingerprint (0 if unknown).
    public var entries: [(seq: UInt64, outcome: Outcome, fingerprint: UInt32)] {
        heap.compactMap { seq in
            outcomes[seq].map { packed in
                (seq, packed & Self.committedBit != 0 ? .committed : .aborted, packed & ~Self.committedBit)
            }
        }
    }

    /// Restores the forgotten watermark from a snapshot.
    public mutating func restore(maxForgottenSeq: UInt64) {
        self.maxForgottenSeq = max(self.maxForgottenSeq, maxForgottenSeq)
        maxRecordedSeq = max(maxRecordedSeq, maxForgottenSeq)
    }

    public var count: Int { outcomes.count }

    /// Remembers `seq`'s outcome; a commit with its operation's `fingerprint` (31 bits kept; 0 for unknown).
    public mutating func record(_ seq: UInt64, _ outcome: Outcome, fingerprint: UInt32 = 0) {
        let packed = outcome == .committed ? Self.committedBit | (fingerprint & ~Self.committedBit) : 0
        maxRecordedSeq = max(maxRecordedSeq, seq)
        if let previous = outcomes.updateValue(packed, forKey: seq) {
            // A repeated commit keeps the fingerprint it was first recorded with.
            if outcome == .committed, previous & Self.committedBit != 0, fingerprint == 0 { outcomes[seq] = previous }
            return
        }
        push(seq)
        if heap.count > capacity {
            let forgotten = popSmallest()
            maxForgottenSeq = max(maxForgottenSeq, forgotten)
            outcomes[forgotten] = nil
        }
    }

    private mutating func push(_ seq: UInt64) {
        heap.append(seq)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child] < heap[parent] else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popSmallest() -> UInt64 {
        let smallest = heap[0]
        let last = heap.removeLast()
        guard !heap.isEmpty else { return smallest }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var least = parent
            if left < heap.count, heap[left] < heap[least] { least = left }
            if right < heap.count, heap[right] < heap[least] { least = right }
            guard least != parent else { break }
            heap.swapAt(parent, least)
            parent = least
        }
        return smallest
    }
}
