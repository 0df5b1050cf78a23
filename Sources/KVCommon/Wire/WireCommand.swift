/// The commands of the replica wire protocol (`seq;cmd;key;value`).
public enum WireCommand: String, CaseIterable, Sendable {
    /// Read a key: `;get;key;` (the user's short form `;get;key` is accepted too).
    case get
    /// Phase one, write: `seq;put;key;value` prepares "set key to value" under transaction `seq`.
    case put
    /// Phase one, delete: `seq;del;key;` prepares "remove key" under transaction `seq`.
    case del
    /// Phase two, commit: `seq;com;;`.
    case com
    /// Phase two, abort: `seq;abrt;;`.
    case abrt
    /// Replica status: `;stat;;` answers with key count, digest, last committed seq and in-doubt seqs.
    case stat
    /// Outcome query: `seq;qry;;` asks what the receiver knows about transaction `seq` (`committed`,
    /// `aborted`, `in_doubt`). Sent by an in-doubt replica to the master and, while the master is
    /// unreachable, to its peers (cooperative termination). A replica that never saw `seq` records it as
    /// aborted before answering, so it will vote no if the prepare arrives later.
    case qry
    /// Phase one, multi-key transaction: `seq;txn;;<json>` (see `TxnSpec`). The replica locks every key
    /// involved, evaluates the compares and votes yes with the chosen branch and its reads.
    case txn
    /// Prefix listing: `N;list;prefix;after` returns up to N committed entries whose key starts with `prefix`
    /// and sorts after `after`, in byte order (a `page` reply). Waits for undecided keys in range, like `get`.
    case list
    /// State transfer, on a healthy replica: `;snap;;` opens a consistent snapshot of the committed key space
    /// (answer: its id in `seq`, `keys`, `digest`); `ID;page;;` returns the next entries of snapshot `ID`.
    case snap
    case page
    /// State transfer, on a replica that is not in sync (see `join`): `V;load;key;C:value` installs a committed
    /// entry (version V, created C); `;drop;key;` removes a key; `;reset;;` empties the replica and marks it
    /// out of sync; `;join;;` marks it in sync, after which it votes and serves reads.
    case load
    case drop
    case reset
    /// `S;join;;T`: in sync from seq `S` on (every transaction it takes part in has a larger seq), ending the
    /// transfer `T` that reset it (refused if another reset it, or none: the replica restarted empty meanwhile);
    /// the master's own joins always carry `S`, `;join;;` means 0 and no transfer.
    case join
    /// `E;memb;;id@host:port,...`: the master announces the replicas that take part from now on (membership
    /// epoch `E`); every prepare after it records them, so an in-doubt replica asks exactly its transaction's
    /// participants.
    case memb
    /// The link handshake (`LinkHandshake`): `E;hello;ROLE:ID;NONCE` then `E;auth;ROLE:ID;PROOF`, the first lines
    /// of every authenticated connection; never sent after it.
    case hello
    case auth

    /// Whether the first field must hold a transaction seq.
    public var needsSeq: Bool {
        switch self {
        case .put, .del, .com, .abrt, .qry, .page, .load, .txn, .list, .memb: return true
        case .get, .stat, .snap, .drop, .reset, .join, .hello, .auth: return false
        }
    }

    /// Whether the first field may hold a seq without needing one.
    public var seqOptional: Bool { self == .join || self == .reset || self == .hello || self == .auth }

    /// Whether the key field must be non-empty (and is allowed at all).
    public var needsKey: Bool {
        switch self {
        case .get, .put, .del, .load, .drop, .hello, .auth: return true
        case .com, .abrt, .stat, .qry, .snap, .page, .reset, .join, .txn, .list, .memb: return false
        }
    }

    /// Whether the value field may be non-empty.
    public var takesValue: Bool {
        self == .put || self == .load || self == .txn || self == .list || self == .memb || self == .join
            || self == .hello || self == .auth
    }

    /// Whether the key field may be given without being required (the prefix of `list`).
    public var keyOptional: Bool { self == .list }
}
