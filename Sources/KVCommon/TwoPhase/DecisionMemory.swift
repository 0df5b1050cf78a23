/// The outcomes a participant remembers for transactions it no longer holds, so duplicate or late
/// messages get consistent answers (`com` twice acks twice; a prepare after an abort votes no). A commit is
/// remembered with a fingerprint of its operation, so a prepare that reuses the seq for another operation (a
/// master that lost its decision log, say) is told no rather than "already committed".
/// Bounded: the oldest outcomes are forgotten first once `capacity` is reached.
public struct DecisionMemory: Sendable {
    public enum Outcome: Equatable, Sendable { case committed, aborted }

    /// The outcome packed with the fingerprint: the top bit set for a commit, the low 31 bits its fingerprint
    /// (0: not known, as after a snapshot written by an earlier version). Four bytes a seq, not sixteen.
    private var outcomes: [UInt64: UInt32] = [:]
    private var order: [UInt64] = []
    private var head = 0
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

    /// Every remembered outcome, oldest first (for snapshots), with a commit's fingerprint (0 if unknown).
    public var entries: [(seq: UInt64, outcome: Outcome, fingerprint: UInt32)] {
        order[head...].compactMap { seq in
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
        order.append(seq)
        if order.count - head > capacity {
            maxForgottenSeq = max(maxForgottenSeq, order[head])
            outcomes[order[head]] = nil
            head += 1
            if head > capacity {
                order.removeFirst(head)
                head = 0
            }
        }
    }
}
