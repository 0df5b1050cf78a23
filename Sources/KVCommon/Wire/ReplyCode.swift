/// Machine-readable reason carried in every reply as `"code"`, beside the human `message`.
public enum ReplyCode: String, Sendable, CaseIterable {
    /// The request did what it asked (vote yes, value found, decision applied).
    case ok
    /// The key does not exist (a get, or a delete's vote).
    case notFound = "not_found"
    /// The key is locked by another transaction: the user's rule, first one wins, this one aborts.
    case conflict
    /// The transaction was already aborted here, so it cannot prepare.
    case aborted
    /// The request waited longer than allowed (e.g. a read of a key locked by an undecided transaction).
    case timeout
    /// The request line was malformed.
    case badRequest = "bad_request"
    /// A decision arrived for a transaction this replica does not know.
    case unknownTransaction = "unknown_transaction"
    /// The replica cannot take more work right now, or (for `qry`) the decision is being written: ask again.
    case busy
    /// The replica is not in sync with the cluster yet: it neither votes nor serves reads until it joins.
    case notSynced = "not_synced"
    /// `qry`: the transaction committed.
    case committed
    /// `qry`: the transaction is prepared here and its outcome is not known here either.
    case inDoubt = "in_doubt"
    /// The link's handshake failed or the peer's role may not send this command; the connection is closed.
    case unauthorized
    /// A master that another one took over from (an older seq epoch) may not run transactions here (`MasterFence`);
    /// `seq` carries the epoch in force.
    case fenced
    /// A write's key holds a version at or above the transaction's seq (its prepare arrived after a later write
    /// committed): voting yes would take the key's version back. Nothing was written; a retry (a new seq) is safe.
    case superseded
}
