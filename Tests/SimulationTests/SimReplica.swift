import KVCommon

/// One replica: the real `Participant`, executed the way `ReplicaNode` and `ReplicaConnectionHandler` do it,
/// over a simulated log, plus the in-doubt resolution ReplicaD is getting (ask the master with `qry`; when
/// the master is unreachable, ask the peers).
///
/// - `.persist` appends to the log; records past `durable` are not yet fsynced. A reply listed after a persist
///   in the same action list is held until that record is durable (`sync`).
/// - Replies on one connection leave in request order (slots), as in `ReplicaConnectionHandler`.
/// - `crash` loses the participant, every record past `durable`, held replies and parked reads;
///   `restart` builds a fresh participant by replaying the durable log.
final class SimReplica {
    private enum Route {
        case remote(connection: Int, slot: Int, call: UInt64, request: WireRequest)
        /// A `com`/`abrt` this replica fed itself after resolving an in-doubt seq; its reply goes nowhere.
        case local
    }

    private struct ReplyOrder {
        var nextSlot = 0
        var nextToWrite = 0
        var ready: [Int: (call: UInt64, request: WireRequest, reply: WireReply)] = [:]
    }

    private struct Held {
        let durableAt: Int
        let id: Participant.RequestID
        let reply: WireReply
    }

    let name: String
    private let context: SimContext
    private let network: SimNetwork
    private let checker: SimChecker
    private(set) var up = true
    private(set) var participant: Participant
    private(set) var log: [ReplicaRecord] = []
    private(set) var durable = 0
    private(set) var crashes = 0
    private var held: [Held] = []
    private var routes: [Participant.RequestID: Route] = [:]
    private var orders: [Int: ReplyOrder] = [:]
    private(set) var parked: [Participant.RequestID] = []
    private var nextRequestID: Participant.RequestID = 1
    /// Outstanding `qry` calls this replica sent: call id -> seq.
    private var questions: [UInt64: UInt64] = [:]
    /// Log positions of the decision records of each seq in the current log.
    private var commitAt: [UInt64: Int] = [:]
    private var abortAt: [UInt64: Int] = [:]
    private var prepareAt: [UInt64: Int] = [:]

    init(name: String, context: SimContext, network: SimNetwork, checker: SimChecker) {
        self.name = name
        self.context = context
        self.network = network
        self.checker = checker
        participant = Participant(server: name)
    }

    var unsynced: Int { log.count - durable }
    var isIdle: Bool { durable == log.count && held.isEmpty && parked.isEmpty && participant.inDoubt.isEmpty }

    func hasCommit(_ seq: UInt64, durableOnly: Bool = false) -> Bool {
        guard let at = commitAt[seq] else { return false }
        return !durableOnly || at < durable
    }

    func hasAbort(_ seq: UInt64) -> Bool { abortAt[seq] != nil }

    func hasPrepare(_ seq: UInt64, durableOnly: Bool = false) -> Bool {
        guard let at = prepareAt[seq] else { return false }
        return !durableOnly || at < durable
    }

    /// In-doubt seqs the resolver would ask about now: recovered at start-up, or older than `limitMs` (the real
    /// resolver uses prepare + commit time-outs, so a normal in-flight transaction is not disturbed).
    func eligibleInDoubt(limitMs: UInt64) -> [UInt64] {
        participant.stat(nowMs: context.nowMs).inDoubt.filter { $0.recovered || $0.ageMs >= limitMs }.map(\.seq)
    }

    /// Every seq with a COMMIT record in the current log.
    var committedSeqs: [UInt64] { commitAt.keys.sorted() }

    // MARK: - Serving requests

    /// A request arrived on `connection` (from the master or a peer).
    func serve(_ request: WireRequest, call: UInt64, connection: Int) {
        var order = orders[connection] ?? ReplyOrder()
        let slot = order.nextSlot
        order.nextSlot += 1
        orders[connection] = order
        let id = newRequestID()
        routes[id] = .remote(connection: connection, slot: slot, call: call, request: request)
        execute(participant.handle(.request(request, id, nowMs: context.nowMs)))
    }

    func timeOutRead() {
        guard !parked.isEmpty else { return }
        let id = parked[context.random.below(parked.count)]
        context.trace("\(name): read \(id) timed out")
        execute(participant.handle(.readTimedOut(id)))
    }

    /// Moves the first `count` unsynced records (all when nil) to stable storage and sends what waited on them.
    func sync(count: Int? = nil) {
        let target = min(log.count, durable + (count ?? log.count))
        guard target > durable else { return }
        let before = durable
        durable = target
        context.trace("\(name): fsync records \(before)..<\(durable)")
        checker.replicaSynced(self, newlyDurable: Array(log[before..<durable]))
        let ready = held.filter { $0.durableAt <= durable }
        held.removeAll { $0.durableAt <= durable }
        for item in ready { release(item.id, item.reply) }
    }

    private func newRequestID() -> Participant.RequestID {
        defer { nextRequestID += 1 }
        return nextRequestID
    }

    private func execute(_ actions: [Participant.Action]) {
        var barrier: Int?
        for action in actions {
            switch action {
            case .persist(let record):
                append(record)
                barrier = log.count
            case .reply(let id, let reply):
                if let barrier, durable < barrier, context.mutation != .replyBeforeDurable {
                    held.append(Held(durableAt: barrier, id: id, reply: reply))
                } else {
                    release(id, reply)
                }
            case .awaitDecision(let id):
                parked.append(id)
            case .awaitDurable:
                barrier = log.count
            }
        }
    }

    private func append(_ record: ReplicaRecord) {
        let position = log.count
        log.append(record)
        if case .prepare(let seq, _) = record { prepareAt[seq] = position }
        if case .commit(let seq) = record, commitAt[seq] == nil { commitAt[seq] = position }
        if case .abort(let seq) = record, abortAt[seq] == nil { abortAt[seq] = position }
        context.trace("\(name): append \(record)")
        checker.replicaAppended(self, record)
    }

    private func release(_ id: Participant.RequestID, _ reply: WireReply) {
        parked.removeAll { $0 == id }
        guard case .remote(let connection, let slot, let call, let request)? = routes.removeValue(forKey: id) else { return }
        var reply = reply
        if context.mutation == .qryLiesAborted, request.command == .qry, reply.code == .committed,
           network.connection(connection).client != SimMaster.name {
            reply.code = .aborted
        }
        guard network.isOpen(connection), var order = orders[connection] else { return }
        order.ready[slot] = (call, request, reply)
        while let next = order.ready.removeValue(forKey: order.nextToWrite) {
            checker.replicaSends(self, request: next.request, reply: next.reply)
            network.send(on: connection, from: name, .reply(call: next.call, next.reply))
            order.nextToWrite += 1
        }
        orders[connection] = order
    }

    // MARK: - In-doubt resolution (this replica asks)

    /// Sends `seq;qry;;` to `target` (the master or a peer) on a fresh connection.
    func ask(_ seq: UInt64, target: String) {
        let connection = network.open(client: name, server: target)
        let call = context.newCallID()
        questions[call] = seq
        context.trace("\(name): in doubt about \(seq), asking \(target)")
        network.send(on: connection, from: name, .request(call: call, WireRequest(seq: seq, command: .qry)))
    }

    /// The answer to one of this replica's `qry` calls. Like `InDoubtResolver`: `committed` or `aborted`
    /// decides; anything else from the master (`busy`) means asking `peers` instead; from a peer it means
    /// nothing (the seq stays blocked until the next attempt).
    func answer(_ reply: WireReply, call: UInt64, from: String, peers: [String]) {
        guard let seq = questions.removeValue(forKey: call), participant.inDoubt.contains(seq) else { return }
        let byMaster = from == SimMaster.name
        guard reply.status && (reply.code == .committed || reply.code == .aborted) else {
            context.trace("\(name): \(from) cannot tell the outcome of \(seq) (\(reply.code.rawValue))")
            if byMaster { for peer in peers { ask(seq, target: peer) } }
            return
        }
        let committed = reply.code == .committed
        context.trace("\(name): \(from) says \(seq) \(committed ? "committed" : "aborted")")
        runLocally(committed ? .com(seq) : .abrt(seq))
        if byMaster { context.stats.masterResolutions += 1 } else { context.stats.peerResolutions += 1 }
    }

    private func runLocally(_ request: WireRequest) {
        let id = newRequestID()
        routes[id] = .local
        execute(participant.handle(.request(request, id, nowMs: context.nowMs)))
    }

    // MARK: - Faults

    func connectionClosed(_ connection: Int) { orders[connection] = nil }

    func crash() {
        up = false
        crashes += 1
        let lost = log.count - durable
        log.removeSubrange(durable...)
        commitAt = commitAt.filter { $0.value < durable }
        abortAt = abortAt.filter { $0.value < durable }
        prepareAt = prepareAt.filter { $0.value < durable }
        held = []
        routes = [:]
        orders = [:]
        parked = []
        questions = [:]
        participant = Participant(server: name)
        context.trace("\(name): CRASH (lost \(lost) unsynced records)")
    }

    func restart() {
        var fresh = Participant(server: name)
        for record in log { fresh.replay(record, nowMs: context.nowMs) }
        participant = fresh
        up = true
        context.trace("\(name): restart, replayed \(log.count) records, in doubt \(participant.inDoubt)")
    }
}
