// Changes: what a transaction that commits does to each key, as the change history records it. The intent says
// what the client asked to write; the yes votes say which branch a txn took and each key's created seq (every
// replica holds the same state, and the coordinator aborts when their votes differ).

extension TransactionManager.Running {
    /// The changes this transaction makes if it commits now (its votes are in), without their index yet.
    var changes: [ChangeHistory.Change] {
        let seq = coordinator.seq
        guard let txn = coordinator.agreedTxn else {
            return intent.writes.map { op in
                change(op, seq: seq, created: coordinator.agreedCreated ?? (op.isPut ? seq : 0))
            }
        }
        let writes = txn.succeeded ? intent.writes : intent.failureWrites
        var changes: [ChangeHistory.Change] = []
        changes.reserveCapacity(writes.count)
        for (position, op) in writes.enumerated() {
            let created = position < txn.writeCreated.count ? txn.writeCreated[position] : (op.isPut ? seq : 0)
            // A del of a key that is absent writes nothing, so it is no change.
            if !op.isPut && created == 0 { continue }
            changes.append(change(op, seq: seq, created: created))
        }
        return changes
    }

    private func change(_ op: WriteOp, seq: UInt64, created: UInt64) -> ChangeHistory.Change {
        switch op {
        case .put(let key, let value):
            return ChangeHistory.Change(index: 0, kind: .put, key: key, value: value, version: seq, created: created,
                                        lease: intent.lease)
        case .delete(let key):
            let kind: ChangeHistory.Change.Kind = intent.expiry && !LeaseKeys.isReserved(key) ? .expire : .delete
            return ChangeHistory.Change(index: 0, kind: kind, key: key, version: seq, created: created)
        }
    }
}

extension WriteOp {
    var isPut: Bool {
        if case .put = self { return true }
        return false
    }
}
