import HeapModule

/// Who waits for changes (issue 13, watch), as a value: blocking queries, each woken once, by a change in its
/// scope or by its deadline, and streams, woken by every change in their scope until they leave. The edge that
/// holds the parked requests asks it which to wake after each appended index and each tick, then serves each woken
/// waiter from `ChangeHistory.since`.
///
/// Matching costs do not grow with the number of waiters: exact keys are a dictionary lookup per changed key, and
/// prefixes one lookup per distinct prefix length registered (a changed key's prefix of that length).
public struct WatchRegistry<ID: Hashable & Sendable>: Sendable {
    public typealias Scope = ChangeHistory.Scope

    private struct Waiter: Sendable {
        var scope: Scope
        /// nil: a stream, woken by every change until removed.
        var deadlineMs: UInt64?
        var token: UInt64
    }

    private var waiters: [ID: Waiter] = [:]
    private var byKey: [[UInt8]: Set<ID>] = [:]
    private var byPrefix: [[UInt8]: Set<ID>] = [:]
    /// How many registered prefixes have each length.
    private var prefixLengths: [Int: Int] = [:]
    /// A blocking query's deadline; ordered by time, then by registration.
    private struct Deadline: Comparable, Sendable {
        var ms: UInt64
        var token: UInt64
        var id: ID

        static func < (a: Deadline, b: Deadline) -> Bool { (a.ms, a.token) < (b.ms, b.token) }
        static func == (a: Deadline, b: Deadline) -> Bool { (a.ms, a.token) == (b.ms, b.token) }
    }

    /// Blocking queries by deadline; entries of waiters that left or were woken are skipped (their token differs).
    private var deadlines = Heap<Deadline>()
    private var nextToken: UInt64 = 0

    public init() {}

    public var count: Int { waiters.count }

    /// Registers a blocking query until `deadlineMs` (replacing any waiter of that id).
    public mutating func addQuery(_ id: ID, scope: Scope, deadlineMs: UInt64) {
        insert(id, Waiter(scope: scope, deadlineMs: deadlineMs, token: token()))
        deadlines.insert(Deadline(ms: deadlineMs, token: waiters[id]!.token, id: id))
    }

    /// Registers a stream: woken by every change in `scope` until removed.
    public mutating func addStream(_ id: ID, scope: Scope) {
        insert(id, Waiter(scope: scope, deadlineMs: nil, token: token()))
    }

    /// The waiter left (its client went away, or its stream ended).
    public mutating func remove(_ id: ID) {
        guard let waiter = waiters.removeValue(forKey: id) else { return }
        switch waiter.scope {
        case .key(let key):
            byKey[key]?.remove(id)
            if byKey[key]?.isEmpty == true { byKey[key] = nil }
        case .prefix(let prefix):
            byPrefix[prefix]?.remove(id)
            if byPrefix[prefix]?.isEmpty == true { byPrefix[prefix] = nil }
            prefixLengths[prefix.count]! -= 1
            if prefixLengths[prefix.count] == 0 { prefixLengths[prefix.count] = nil }
        }
    }

    /// The waiters the changed `keys` wake: each blocking query once (it is removed), each stream every time.
    public mutating func changed(_ keys: [[UInt8]]) -> (queries: [ID], streams: [ID]) {
        var woken = Set<ID>()
        // Leases' own keys wake nobody (see `ChangeHistory.Scope.contains`).
        for key in keys where !LeaseKeys.isReserved(key) {
            if let ids = byKey[key] { woken.formUnion(ids) }
            for length in prefixLengths.keys where length <= key.count {
                if let ids = byPrefix[Array(key[..<length])] { woken.formUnion(ids) }
            }
        }
        var queries: [ID] = []
        var streams: [ID] = []
        for id in woken {
            if waiters[id]?.deadlineMs == nil {
                streams.append(id)
            } else {
                queries.append(id)
                remove(id)
            }
        }
        return (queries, streams)
    }

    /// The blocking queries whose deadline is at or before `nowMs` (removed): each answers "unchanged".
    public mutating func expired(nowMs: UInt64) -> [ID] {
        var result: [ID] = []
        while let first = deadlines.min, first.ms <= nowMs {
            deadlines.removeMin()
            guard waiters[first.id]?.token == first.token else { continue }
            result.append(first.id)
            remove(first.id)
        }
        return result
    }

    /// The earliest deadline still pending (for the edge's timer), if any.
    public mutating func nextDeadline() -> UInt64? {
        while let first = deadlines.min {
            if waiters[first.id]?.token == first.token { return first.ms }
            deadlines.removeMin()
        }
        return nil
    }

    private mutating func token() -> UInt64 {
        nextToken += 1
        return nextToken
    }

    private mutating func insert(_ id: ID, _ waiter: Waiter) {
        remove(id)
        waiters[id] = waiter
        switch waiter.scope {
        case .key(let key): byKey[key, default: []].insert(id)
        case .prefix(let prefix):
            byPrefix[prefix, default: []].insert(id)
            prefixLengths[prefix.count, default: 0] += 1
        }
    }
}
