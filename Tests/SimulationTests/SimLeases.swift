import KVCommon

/// A master's leases, run the way the master runs them (`LeaseKeeper` and the lease routes): the real
/// `LeaseTable`, fed every change the master publishes and loaded at start from a replica's listing of the
/// reserved keys while writes are paused; expiries and revokes driven by `LeaseRemoval`; and the clients' grants,
/// attachments, keepalives and revokes. All of it lives in memory and is lost when the master crashes.
///
/// - Refresh (after a removal's compare failed) reads each attached key from a participant. A key locked by an
///   undecided transaction is answered as a real `get` is when its wait for the decision runs out.
final class SimLeases {
    enum Purpose {
        case grant(lease: UInt64, ttlS: UInt64, startMs: Int64)
        case attach(key: [UInt8], lease: UInt64)
        case expiry(lease: UInt64, attempt: Int)
        case revoke(lease: UInt64, compareFailures: Int, attempts: Int)
    }

    enum Loading: Equatable {
        case idle
        case pausing(TransactionManager.PauseID)
        case listing(TransactionManager.PauseID)
        case loaded
    }

    /// What the master offers its lease side: submitting a write (its answer may come before `submit` returns),
    /// pausing writes, listing a participant's
    /// reserved keys (the answer comes to `listAnswered` or `listFailed`), reading a key from a participant (nil:
    /// no answer, the replica cannot be reached).
    struct Master {
        var submit: (TransactionManager.WriteIntent, String, (UInt64) -> Void) -> Void
        var pause: (TransactionManager.PauseID) -> Void
        var resume: (TransactionManager.PauseID) -> Void
        var list: ([UInt8]) -> Bool
        var read: ([UInt8]) -> WireReply?
        var name: String
        var instance: Int
    }

    static let pageLimit = 1000
    static let ttlsS: ClosedRange<UInt64> = 1...3

    private let context: SimContext
    private let checker: SimChecker
    private let master: Master
    private(set) var table: LeaseTable
    private(set) var loading = Loading.idle
    private var listed: [(key: [UInt8], value: [UInt8], version: UInt64)] = []
    private var writes: [UInt64: Purpose] = [:]
    /// Removals to run again, and when (`LeaseKeeper`'s list).
    private var again: [(purpose: Purpose, atMs: Int64)] = []
    /// Loads that failed in a row, and when the next may start (`LeaseKeeper` backs off 100 ms more each time, to
    /// 1 s: a key in doubt keeps the listing waiting until it is resolved).
    private var loadFailures = 0
    private var loadAtMs: Int64 = 0

    init(context: SimContext, checker: SimChecker, master: Master) {
        self.context = context
        self.checker = checker
        self.master = master
        let limits = ClusterConfig.Limits()
        table = LeaseTable(opsMax: limits.txnOpsMax, bytesMax: limits.txnBytesMax)
    }

    private var nowMs: Int64 { Int64(context.nowMs) }

    /// Loaded, and nothing of a lease left in the table or running.
    var isSettled: Bool { loading == .loaded && table.leases.isEmpty && writes.isEmpty && again.isEmpty }

    /// Not loaded, and the next load may start.
    var loadDue: Bool { loading == .idle && nowMs >= loadAtMs }

    /// A lease is due, or a removal is due to run again.
    var hasDueWork: Bool {
        guard loading == .loaded else { return false }
        return again.contains { $0.atMs <= nowMs } || table.leases.values.contains { !$0.removing && $0.deadlineMs <= nowMs }
    }

    /// The leases alive now, by id.
    var alive: [UInt64] { table.leases.keys.filter { table.lease($0, nowMs: nowMs) != nil }.sorted() }

    // MARK: - Start-up: the table is read with writes paused

    func startLoad(pause id: TransactionManager.PauseID) {
        guard loadDue else { return }
        loading = .pausing(id)
        master.pause(id)
    }

    func paused(_ id: TransactionManager.PauseID) {
        guard loading == .pausing(id) else { return master.resume(id) }
        loading = .listing(id)
        listed = []
        if !master.list([]) { loadFailed("no participant to list the leases from") }
    }

    func pauseFailed(_ id: TransactionManager.PauseID) {
        guard loading == .pausing(id) else { return }
        context.trace("\(master.name): leases not loaded: writes did not pause")
        backOff()
    }

    private func backOff() {
        loading = .idle
        loadFailures += 1
        loadAtMs = nowMs + Int64(min(1000, 100 * loadFailures))
    }

    func listAnswered(_ reply: WireReply) {
        guard case .listing(let pause) = loading else { return }
        guard reply.status, let page = reply.page else { return loadFailed("the listing failed: \(reply.message)") }
        listed += page.entries.map { ($0.key, $0.value, $0.version) }
        if !page.done, let last = page.entries.last {
            if !master.list(last.key) { loadFailed("no participant to list the rest from") }
            return
        }
        let downtime: Int64 = context.mutation == .leaseRecoveryCountsDowntime ? 3000 : 0
        table.load(listed, nowMs: nowMs - downtime)
        loading = .loaded
        loadFailures = 0
        context.stats.leaseLoads += 1
        context.trace("\(master.name): leases loaded: \(table.leases.keys.sorted())")
        master.resume(pause)
    }

    func listFailed() { loadFailed("the listing's connection closed") }

    private func loadFailed(_ why: String) {
        guard case .listing(let pause) = loading else { return }
        context.trace("\(master.name): leases not loaded: \(why)")
        backOff()
        master.resume(pause)
    }

    /// Every published index's changes, before the transaction's `com` goes out.
    func changed(_ changes: [ChangeHistory.Change]) { table.apply(changes, nowMs: nowMs) }

    // MARK: - Expiry (`LeaseKeeper`)

    func tick() {
        let due = again.filter { $0.atMs <= nowMs }
        again.removeAll { $0.atMs <= nowMs }
        for item in due { runRemoval(item.purpose) }
        for id in table.takeExpired(nowMs: nowMs) {
            checker.leaseExpiryStarted(id, nowMs: nowMs, master: master.instance)
            runRemoval(.expiry(lease: id, attempt: 0))
        }
    }

    private func runRemoval(_ purpose: Purpose) {
        let id: UInt64
        let refresh: Bool
        switch purpose {
        case .expiry(let lease, let attempt): (id, refresh) = (lease, attempt > 0)
        case .revoke(let lease, let failures, _): (id, refresh) = (lease, failures > 0)
        case .grant, .attach: return
        }
        if refresh { self.refresh(id) }
        guard let lease = table.leases[id] else {
            return context.trace("\(master.name): lease \(id) is gone from the table; its removal stops")
        }
        var expiry = false
        if case .expiry = purpose { expiry = true }
        let intent = TransactionManager.WriteIntent(txn: LeaseTable.removal(of: lease), expiry: expiry)
        submit(intent, "\(expiry ? "expire" : "revoke") lease \(id) with \(lease.keys.count) key(s)", purpose)
    }

    /// Marks the keys written since their attachment as stale (`LeaseKeeper.refresh`).
    private func refresh(_ id: UInt64) {
        guard let lease = table.leases[id] else { return }
        for (key, version) in lease.keys.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            guard let reply = master.read(key) else { continue }
            let shown = context.mutation == .leaseRefreshReadsFailureAsAbsent
                ? (reply.status ? reply.seq ?? 0 : 0) : LeaseTable.version(from: reply)
            guard let current = shown else { continue }
            if current != version { table.markStale(key, of: id, attachedAt: version) }
        }
    }

    /// Sends the write, registered under its id before the master can answer it.
    private func submit(_ intent: TransactionManager.WriteIntent, _ what: String, _ purpose: Purpose) {
        master.submit(intent, what) { [self] id in writes[id] = purpose }
    }

    // MARK: - Answers

    /// The answer to write `id`; false if it is not a lease's.
    func answered(_ id: UInt64, _ answer: TransactionManager.WriteAnswer) -> Bool {
        guard let purpose = writes.removeValue(forKey: id) else { return false }
        var succeeded = false
        if case .outcome(let outcome) = answer, outcome.committed, outcome.txn?.succeeded == true { succeeded = true }
        switch purpose {
        case .grant(let lease, let ttl, let startMs):
            guard succeeded else { return true }
            context.stats.leaseGrants += 1
            checker.leasePromised(lease, untilMs: startMs + Int64(ttl) * 1000)
        case .attach(let key, let lease):
            table.attachDone(key, to: lease)
            if succeeded { context.stats.leaseAttaches += 1 }
        case .expiry(let lease, let attempt):
            let verdict = LeaseRemoval.verdict(answer)
            if verdict == .compareFailed { context.stats.leaseCompareRetries += 1 }
            switch LeaseRemoval.afterExpiry(verdict, attempt: attempt) {
            case .done: context.stats.leaseExpiries += 1
            case .again(let next, let delay): again.append((.expiry(lease: lease, attempt: next), nowMs + draw(delay)))
            case .giveUp: table.removalFailed(lease)
            }
        case .revoke(let lease, let failures, let attempts):
            let verdict = LeaseRemoval.verdict(answer)
            if verdict == .compareFailed { context.stats.leaseCompareRetries += 1 }
            switch LeaseRemoval.afterRevoke(verdict, compareFailures: failures, attempts: attempts) {
            case .done: context.stats.leaseRevokes += 1
            case .again(let next, let delay):
                again.append((.revoke(lease: lease, compareFailures: next, attempts: attempts + 1), nowMs + draw(delay)))
            case .giveUp: table.removalFailed(lease)
            }
        }
        return true
    }

    private func draw(_ range: ClosedRange<Int64>) -> Int64 {
        range.lowerBound + Int64(context.random.below(Int(range.upperBound - range.lowerBound) + 1))
    }

    // MARK: - Clients

    /// A client asks for one of: a grant, an attachment of `keys`' key to a live lease, a keepalive, a revoke.
    func clientRequest(keys: [[UInt8]]) {
        guard loading == .loaded else { return }
        let alive = alive
        let choice = alive.isEmpty ? 0 : context.random.below(10)
        switch choice {
        case 0...2:
            let id = context.newLeaseID()
            let ttl = Self.ttlsS.lowerBound + UInt64(context.random.below(Int(Self.ttlsS.count)))
            let intent = TransactionManager.WriteIntent(txn: LeaseTable.grant(id, ttlS: ttl))
            submit(intent, "grant lease \(id) ttl \(ttl) s", .grant(lease: id, ttlS: ttl, startMs: nowMs))
        case 3...7:
            let id = context.random.pick(alive)
            let key = context.random.pick(keys)
            guard case .success(let lease) = table.beginAttach(key, to: id, nowMs: nowMs) else { return }
            let value = Array("l\(id).\(context.random.below(1000))".utf8)
            let intent = TransactionManager.WriteIntent(txn: LeaseTable.attach(key, value: value, to: lease), lease: id)
            submit(intent, "put \(key.brief)=\(value.brief) with lease \(id)", .attach(key: key, lease: id))
        case 8:
            let id = context.random.pick(alive)
            guard let lease = table.keepAlive(id, nowMs: nowMs) else { return }
            context.stats.leaseKeepalives += 1
            context.trace("\(master.name): keepalive lease \(id): \(lease.ttlS) s from now")
            checker.leasePromised(id, untilMs: nowMs + Int64(lease.ttlS) * 1000)
        default:
            let id = context.random.pick(alive)
            guard table.beginRevoke(id, nowMs: nowMs) != nil else { return }
            runRemoval(.revoke(lease: id, compareFailures: 0, attempts: 0))
        }
    }
}
