// MasterFence: which master a replica takes two-phase-commit commands from.
//
// Every master link proves, in its handshake (`LinkHandshake`), the master's id and its seq epoch. A replica
// keeps the newest (epoch, master) it accepted, durably (a `fence` record, written before the reply to the
// command that moved it), and refuses the commands that change or reveal transaction state to any other:
//
// - A link of an older epoch, or of the same epoch but another master, is fenced: a master that another one
//   took over from (one started later, on a copy of the decision log or after a failover) can no longer
//   prepare, decide, announce members or transfer state here. Reads (`get`, `list`, `stat`) stay open to it.
// - A link of a newer epoch moves the fence forward (the first master link sets it); it never moves back.
// - A prepare's seq must lie inside the link's epoch (seq / 10^9 == epoch), and a decision or query must not
//   name a seq beyond it: no seq a master will issue later can be decided before it is issued, and no message
//   can record an outcome (and so move the decision memory's watermark) past the epoch of a proven master.
//
// Links without a handshake (a cluster without a key) carry no epoch and are not fenced.

/// The identity and seq epoch a master proved on one link.
public struct MasterLink: Equatable, Sendable {
    public var master: String
    public var epoch: UInt64

    public init(master: String, epoch: UInt64) {
        self.master = master
        self.epoch = epoch
    }
}

/// The newest master a replica accepted, and the rule for the next request.
public struct MasterFence: Equatable, Sendable {
    public private(set) var epoch: UInt64 = 0
    public private(set) var master = ""

    public init(epoch: UInt64 = 0, master: String = "") {
        self.epoch = epoch
        self.master = master
    }

    public enum Verdict: Equatable {
        /// The link is the fenced master's: go on.
        case accept
        /// A newer master: the fence moves to it (persisted before the reply), then go on.
        case advance(MasterFence)
        /// Refuse with this code and message.
        case refuse(ReplyCode, String)
    }

    /// Commands that read or change transaction state; a fenced master may still read the data.
    static func guards(_ command: WireCommand) -> Bool {
        switch command {
        case .get, .list, .stat, .hello, .auth: return false
        case .put, .del, .txn, .com, .abrt, .qry, .memb, .snap, .page, .load, .drop, .reset, .join: return true
        }
    }

    /// The verdict on `request` arriving on `link`.
    public func judge(_ request: WireRequest, on link: MasterLink) -> Verdict {
        guard Self.guards(request.command) else { return .accept }
        // A replica that never took a master's command has no fence yet: any master sets it.
        let newer = link.epoch > epoch || (epoch == 0 && master.isEmpty && !link.master.isEmpty)
        guard newer || (link.epoch == epoch && link.master == master) else {
            return .refuse(.fenced, "master \(link.master) of seq epoch \(link.epoch) is fenced here: master \(master) "
                + "took over at seq epoch \(epoch); only one master may run (see docs/OPERATIONS.md, Security)")
        }
        if let seq = request.seq, let problem = Self.outsideEpoch(seq, request.command, link.epoch) {
            return .refuse(.badRequest, problem)
        }
        return newer ? .advance(MasterFence(epoch: link.epoch, master: link.master)) : .accept
    }

    private static func outsideEpoch(_ seq: UInt64, _ command: WireCommand, _ epoch: UInt64) -> String? {
        let perEpoch = TransactionManager.seqsPerEpoch
        guard epoch < UInt64.max / perEpoch - 1 else { return "seq epoch \(epoch) is beyond any seq" }
        let base = epoch * perEpoch, end = base + perEpoch
        switch command {
        case .put, .del, .txn:
            guard seq >= base, seq < end else {
                return "seq \(seq) is outside seq epoch \(epoch) of the master that sent it: a prepare's seq is "
                    + "epoch × \(perEpoch) plus a counter"
            }
        case .com, .abrt, .qry:
            guard seq < end else {
                return "seq \(seq) lies beyond seq epoch \(epoch) of the master that sent it: no transaction of it "
                    + "can have been issued yet"
            }
        default:
            break
        }
        return nil
    }

    /// Replay: the fence only moves forward.
    mutating func restore(_ other: MasterFence) {
        if other.epoch > epoch || (other.epoch == epoch && master.isEmpty) { self = other }
    }
}
