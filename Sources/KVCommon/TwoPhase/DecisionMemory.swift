/// The outcomes a participant remembers for transactions it no longer holds, so duplicate or late
/// messages get consistent answers (`com` twice acks twice; a prepare after an abort votes no).
/// Bounded: the oldest outcomes are forgotten first once `capacity` is reached.
public struct DecisionMemory: Sendable {
    public enum Outcome: Equatable, Sendable { case committed, aborted }

    private var outcomes: [UInt64: Outcome] = [:]
    private var order: [UInt64] = []
    private var head = 0
    public let capacity: Int
    /// The largest seq ever forgotten. An unknown seq at or below it may have been decided here once.
    public private(set) var maxForgottenSeq: UInt64 = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "DecisionMemory capacity must be positive")
        self.capacity = capacity
    }

    public subscript(seq: UInt64) -> Outcome? { outcomes[seq] }

    /// Whether an unknown `seq` might be one this memory has forgotten (so "never seen" cannot be claimed).
    public func mayHaveForgotten(_ seq: UInt64) -> Bool { seq <= maxForgottenSeq }

    /// Every remembered outcome, oldest first (for snapshots).
    public var entries: [(seq: UInt64, outcome: Outcome)] {
        order[head...].compactMap { seq in outcomes[seq].map { (seq, $0) } }
    }

    /// Restores the forgotten watermark from a snapshot.
    public mutating func restore(maxForgottenSeq: UInt64) {
        self.maxForgottenSeq = max(self.maxForgottenSeq, maxForgottenSeq)
    }

    public var count: Int { outcomes.count }

    public mutating func record(_ seq: UInt64, _ outcome: Outcome) {
        if outcomes.updateValue(outcome, forKey: seq) != nil { return }
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
