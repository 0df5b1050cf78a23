/// The recent committed changes in index order, bounded by count and bytes (issue 13, watch): what a watcher that
/// resumes after index N is served from. Every committed transaction gets one index, in the order its COMMIT
/// became durable on the master; a transaction that writes several keys gives several changes with that index.
/// Eviction drops whole indexes from the oldest end, so a resume point is either fully served or refused as
/// compacted, never half.
public struct ChangeHistory: Sendable {
    public struct Change: Equatable, Sendable {
        public enum Kind: String, Sendable {
            case put
            case delete
            /// Deleted because its lease expired or was revoked.
            case expire
        }

        public var index: UInt64
        public var kind: Kind
        public var key: [UInt8]
        /// Empty for a delete or an expiry.
        public var value: [UInt8]
        /// The seq of the transaction that wrote it (the key's version after a put).
        public var version: UInt64
        public var created: UInt64
        /// The lease the key is attached to (0: none).
        public var lease: UInt64

        public init(index: UInt64, kind: Kind, key: [UInt8], value: [UInt8] = [], version: UInt64, created: UInt64,
                    lease: UInt64 = 0) {
            self.index = index
            self.kind = kind
            self.key = key
            self.value = value
            self.version = version
            self.created = created
            self.lease = lease
        }

        /// What it counts against `bytesMax`: key, value and a fixed overhead.
        var bytes: Int { key.count + value.count + 48 }
    }

    /// Which keys a watcher or blocking query looks at.
    public enum Scope: Equatable, Sendable {
        case key([UInt8])
        case prefix([UInt8])

        /// Whether a change of `key` is in scope. Leases' own keys (`LeaseKeys`) never are: clients cannot name
        /// them, and an empty prefix must not show them.
        public func contains(_ key: [UInt8]) -> Bool {
            switch self {
            case .key(let wanted): return key == wanted
            case .prefix(let prefix): return key.starts(with: prefix) && !LeaseKeys.isReserved(key)
            }
        }
    }

    /// A resume point older than what is kept: the watcher must re-read, then watch from `reread`.
    public struct Compacted: Error, Equatable, Sendable {
        /// The oldest index still kept: every change after `reread - 1` is served.
        public var oldestKept: UInt64
        /// Where to resume after re-reading the current state (the newest index).
        public var reread: UInt64
    }

    public let countMax: Int
    public let bytesMax: Int
    /// The newest index appended (0: none ever).
    public private(set) var lastIndex: UInt64
    /// The changes after the compaction point, oldest first (`storage[head...]`).
    private var storage: [Change] = []
    private var head = 0
    public private(set) var bytes = 0
    /// The newest kept index of each key in the history (a key scope's last change without a scan).
    private var lastOfKey: [[UInt8]: UInt64] = [:]
    /// Every index at or below this is gone (compacted or from before this history began).
    public private(set) var compactedThrough: UInt64

    /// `startIndex`: the index before the first this history will hold (a master that restarts with nothing
    /// recovered begins after the newest index it has issued, so older resume points are refused, not missed).
    public init(countMax: Int, bytesMax: Int, startIndex: UInt64 = 0) {
        precondition(countMax >= 1 && bytesMax >= 1)
        self.countMax = countMax
        self.bytesMax = bytesMax
        lastIndex = startIndex
        compactedThrough = startIndex
    }

    public var count: Int { storage.count - head }

    /// Every change kept, oldest first (what a compaction of the decision log carries forward).
    public var kept: ArraySlice<Change> { storage[head...] }

    /// Counts every index up to `index` as issued: a transaction that changed nothing leaves no record of its
    /// changes, so a history rebuilt from the decision log has gaps that nothing can be missed in.
    public mutating func skip(to index: UInt64) {
        if index > lastIndex { lastIndex = index }
    }

    /// Appends the changes of index `lastIndex + 1` (all of them, or none for a transaction that changed nothing),
    /// then evicts the oldest indexes past the bounds. The newest index is always kept whole, even when it alone
    /// is over them.
    public mutating func append(index: UInt64, _ changes: [Change]) {
        precondition(index == lastIndex + 1, "index \(index) appended after \(lastIndex)")
        precondition(changes.allSatisfy { $0.index == index })
        lastIndex = index
        // An index that changed nothing (a compare that failed) is only counted: nothing of it can be missed.
        guard !changes.isEmpty else { return }
        storage.append(contentsOf: changes)
        bytes += changes.reduce(0) { $0 + $1.bytes }
        for change in changes { lastOfKey[change.key] = index }
        evict()
    }

    /// Every change in `scope` with an index above `after`, oldest first, at most `limit` indexes' worth (a
    /// transaction's changes are never split). Compacted when changes after `after` may have been dropped.
    public func since(_ after: UInt64, in scope: Scope, limit: Int = .max) -> Result<[Change], Compacted> {
        guard after >= compactedThrough else {
            return .failure(Compacted(oldestKept: compactedThrough + 1, reread: lastIndex))
        }
        guard after < lastIndex else { return .success([]) }
        var result: [Change] = []
        var indexes = 0
        var position = firstPosition(after: after)
        while position < storage.count {
            let change = storage[position]
            if scope.contains(change.key) {
                if result.last?.index != change.index {
                    guard indexes < limit else { break }
                    indexes += 1
                }
                result.append(change)
            }
            position += 1
        }
        return .success(result)
    }

    /// The newest index at which something in `scope` changed, if it is still kept (for a blocking query's
    /// answer: "unchanged since N" needs no changes listed).
    public func lastChange(in scope: Scope) -> UInt64? {
        if case .key(let key) = scope { return lastOfKey[key] }
        var position = storage.count
        while position > head {
            position -= 1
            if scope.contains(storage[position].key) { return storage[position].index }
        }
        return nil
    }

    /// The first position holding an index above `after` (binary search: indexes ascend).
    private func firstPosition(after: UInt64) -> Int {
        var low = head
        var high = storage.count
        while low < high {
            let middle = (low + high) / 2
            if storage[middle].index <= after { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private mutating func evict() {
        let newest = lastIndex
        while count > countMax || bytes > bytesMax {
            let oldest = storage[head].index
            guard oldest != newest else { break }
            while head < storage.count, storage[head].index == oldest {
                bytes -= storage[head].bytes
                if lastOfKey[storage[head].key] == oldest { lastOfKey[storage[head].key] = nil }
                head += 1
            }
            compactedThrough = oldest
        }
        // Reclaim the dropped prefix once it is as large as what is kept (amortized O(1) per change).
        if head > 0 && head >= count {
            storage.removeFirst(head)
            head = 0
        }
    }
}
