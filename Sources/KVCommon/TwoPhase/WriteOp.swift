/// The write a transaction prepares on every replica.
public enum WriteOp: Equatable, Sendable {
    case put(key: [UInt8], value: [UInt8])
    case delete(key: [UInt8])

    public var key: [UInt8] {
        switch self {
        case .put(let key, _), .delete(let key): return key
        }
    }

    /// The phase-one wire request for this write under transaction `seq`.
    public func prepareRequest(seq: UInt64) -> WireRequest {
        switch self {
        case .put(let key, let value): return .put(seq, key, value)
        case .delete(let key): return .del(seq, key)
        }
    }
}
