import KVCommon

/// What a write asks of every replica: one put or delete, or a multi-key transaction.
enum WriteRequest {
    case single(WriteOp)
    case txn(TxnSpec)

    /// The phase-one request for transaction `seq`.
    func prepare(seq: UInt64) -> WireRequest {
        switch self {
        case .single(let op): return op.prepareRequest(seq: seq)
        case .txn(let spec): return WireRequest(seq: seq, command: .txn, value: spec.wireJSON())
        }
    }

    /// What the master's `TransactionManager` runs (it fills in the seq).
    var intent: TransactionManager.WriteIntent {
        switch self {
        case .single(let op): return .init(op)
        case .txn(let spec): return .init(txn: spec)
        }
    }
}
