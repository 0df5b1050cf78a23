// InDoubtTermination: how a replica finds out the outcome of its in-doubt transactions when nobody tells it
// (cooperative termination, Bernstein, Hadzilacos and Goodman, ch. 7), as a value-type state machine.
//
// Eligible: a transaction recovered from the log at start-up, or a live one older than the coordinator's own
// time limits (so a normal in-flight transaction is never disturbed). For each, ask the master (`seq;qry;;` at
// query_listen) and, if it cannot tell, each of the transaction's other participants in turn (the members the
// master announced before the prepare, recorded with it): the first `committed` or `aborted` decides; if no
// one can tell, the transaction stays blocked (its key stays locked) until the next round.
//
// Invariants:
// - A seq is decided only on a definite answer (`committed` or `aborted` with status true).
// - Only the transaction's participants are asked: a replica that never took part in it (added later, removed,
//   wiped) could claim "never prepared" for a transaction that committed. A prepare recorded without members
//   (from before members were announced) asks the master alone.
// - At most one question per seq is outstanding.

public struct InDoubtTermination {
    /// Whom a question goes to.
    public enum Target: Hashable, Sendable {
        case master
        case peer(Member)
    }

    public enum Event: Equatable {
        /// A periodic look at the replica's in-doubt transactions.
        case tick(inDoubt: [ReplicaStat.InDoubt])
        /// The answer of `target` about `seq`; nil when it could not be reached or gave no parsable answer.
        case answer(seq: UInt64, from: Target, WireReply?)
    }

    public enum Action: Equatable {
        case ask(Target, seq: UInt64)
        /// Apply the outcome (`com` or `abrt` fed to the replica itself).
        case decide(seq: UInt64, committed: Bool)
    }

    /// Prepare + commit time-outs: a live transaction younger than this is the coordinator's business.
    /// Both may change at a reload (time-outs, `master.query_listen`); they judge the next tick on.
    public var liveLimitMs: UInt64
    public var askMaster: Bool
    /// This replica's id, left out of the members it asks.
    public let me: String
    /// Seqs being asked about, with the targets still to ask after the current one.
    private var asking: [UInt64: [Target]] = [:]
    /// Seqs that no one could tell the outcome of at the last attempt.
    public private(set) var blocked: Set<UInt64> = []

    public init(liveLimitMs: UInt64, askMaster: Bool, me: String) {
        self.liveLimitMs = liveLimitMs
        self.askMaster = askMaster
        self.me = me
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .tick(let inDoubt):
            let seqs = Set(inDoubt.map(\.seq))
            blocked.formIntersection(seqs)
            asking = asking.filter { seqs.contains($0.key) }
            var actions: [Action] = []
            for item in inDoubt where (item.recovered || item.ageMs >= liveLimitMs) && asking[item.seq] == nil {
                var targets: [Target] = askMaster ? [.master] : []
                targets += item.members.filter { $0.id != me }.map(Target.peer)
                guard let first = targets.first else {
                    blocked.insert(item.seq)
                    continue
                }
                asking[item.seq] = Array(targets.dropFirst())
                actions.append(.ask(first, seq: item.seq))
            }
            return actions
        case .answer(let seq, _, let reply):
            guard let rest = asking[seq] else { return [] }
            if let reply, reply.status, reply.code == .committed || reply.code == .aborted {
                asking[seq] = nil
                blocked.remove(seq)
                return [.decide(seq: seq, committed: reply.code == .committed)]
            }
            guard let next = rest.first else {
                asking[seq] = nil
                blocked.insert(seq)
                return []
            }
            asking[seq] = Array(rest.dropFirst())
            return [.ask(next, seq: seq)]
        }
    }
}
