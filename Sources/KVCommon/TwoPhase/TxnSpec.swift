import Foundation

/// A multi-key transaction in the spirit of etcd's txn: if every compare holds, run `success`, else
/// `failure`. Replicas evaluate the compares themselves, under the locks of every key involved, during the
/// prepare; all replicas hold the same committed state, so they choose the same branch (the master checks).
///
/// Wire form (the value of `seq;txn;;<json>`, keys and values base64):
/// `{"compare":[{"key":"..","target":"version|created|value|exists","op":"=|!=|<|>","value":..}],
///   "success":[{"op":"put|del|get","key":"..","value":".."}],"failure":[...]}`.
public struct TxnSpec: Equatable, Sendable {
    public enum Target: String, Sendable { case version, created, value, exists }
    public enum Comparison: String, Sendable { case equal = "=", notEqual = "!=", less = "<", greater = ">" }

    public struct Compare: Equatable, Sendable {
        public var key: [UInt8]
        public var target: Target
        public var comparison: Comparison
        /// For `version`/`created`: the number; for `exists`: 1 or 0.
        public var number: UInt64
        /// For `value`: the bytes.
        public var bytes: [UInt8]

        public init(key: [UInt8], target: Target, comparison: Comparison = .equal, number: UInt64 = 0,
                    bytes: [UInt8] = []) {
            self.key = key
            self.target = target
            self.comparison = comparison
            self.number = number
            self.bytes = bytes
        }

        /// Whether the compare holds for `entry` (nil: the key does not exist; its version and created are 0).
        public func holds(for entry: Participant.Entry?) -> Bool {
            switch target {
            case .value:
                guard let entry else { return comparison == .notEqual }
                return compare(entry.value.lexicographicallyPrecedes(bytes) ? -1 : (entry.value == bytes ? 0 : 1))
            case .version:
                return compareNumbers(entry?.version ?? 0, number)
            case .created:
                return compareNumbers(entry?.created ?? 0, number)
            case .exists:
                return compareNumbers(entry == nil ? 0 : 1, number)
            }
        }

        private func compareNumbers(_ lhs: UInt64, _ rhs: UInt64) -> Bool {
            compare(lhs < rhs ? -1 : (lhs == rhs ? 0 : 1))
        }

        private func compare(_ order: Int) -> Bool {
            switch comparison {
            case .equal: return order == 0
            case .notEqual: return order != 0
            case .less: return order < 0
            case .greater: return order > 0
            }
        }
    }

    public enum Op: Equatable, Sendable {
        case put(key: [UInt8], value: [UInt8])
        case delete(key: [UInt8])
        case get(key: [UInt8])

        public var key: [UInt8] {
            switch self {
            case .put(let key, _), .delete(let key), .get(let key): return key
            }
        }

        /// The write it makes (nil for a get).
        public var write: WriteOp? {
            switch self {
            case .put(let key, let value): return .put(key: key, value: value)
            case .delete(let key): return .delete(key: key)
            case .get: return nil
            }
        }
    }

    public var compare: [Compare]
    public var success: [Op]
    public var failure: [Op]

    public init(compare: [Compare], success: [Op], failure: [Op]) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }

    /// Every key the transaction touches, sorted: the global lock order, so transactions cannot deadlock.
    public var keys: [[UInt8]] {
        let all = Set(compare.map(\.key) + success.map(\.key) + failure.map(\.key))
        return all.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Keys written by either branch (they must not repeat within one branch).
    public var writtenKeys: [[UInt8]] {
        let written = (success + failure).compactMap { op -> [UInt8]? in
            if case .get = op { return nil }
            return op.key
        }
        return Array(Set(written))
    }

    /// Total bytes of keys and values, for the size limit.
    public var sizeBytes: Int {
        compare.reduce(0) { $0 + $1.key.count + $1.bytes.count } + (success + failure).reduce(0) { total, op in
            if case .put(let key, let value) = op { return total + key.count + value.count }
            return total + op.key.count
        }
    }

    public var opCount: Int { compare.count + success.count + failure.count }
}
