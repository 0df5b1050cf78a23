import KVCommon

/// One replica process: the real `Participant` and the real termination rule (`InDoubtTermination`), executed
/// the way `ReplicaNode`, `ReplicaConnectionHandler` and `InDoubtResolver` do it, over a simulated log.
///
/// - `.persist` appends to the log; records past `durable` are not yet fsynced. A reply listed after a persist
///   (or `.awaitDurable`) in the same action list is held until the log is durable that far (`sync`).
/// - Replies on one connection leave in request order (slots), as in `ReplicaConnectionHandler`.
/// - The resolver asks the master's query address and the transaction's other participants (recorded with its
///   prepare), one question at a time per seq.
/// - `crash` loses the participant, every record past `durable`, held replies and parked reads; `wipe` loses the
///   whole data directory too; `restart` builds a fresh participant by replaying the log.
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

    /// The node's name, which is also its address in the network.
    let name: String
    private let context: SimContext
    private let network: SimNetwork
    private let checker: SimChecker
    /// The id this replica was started as (the one cluster.yaml gives its node).
    private var id: String
    private(set) var up = true
    private(set) var participant: Participant
    private(set) var log: [ReplicaRecord] = []
    private(set) var durable = 0
    private var held: [Held] = []
    private var routes: [Participant.RequestID: Route] = [:]
    private var orders: [Int: ReplyOrder] = [:]
    private(set) var parked: [Participant.RequestID] = []
    private var nextRequestID: Participant.RequestID = 1
    private var termination: InDoubtTermination
    /// Outstanding `qry` calls this replica sent: call id -> (seq, whom, on which connection).
    private var questions: [UInt64: (seq: UInt64, target: InDoubtTermination.Target, connection: Int)] = [:]
    /// Whether this replica can open a connection to a node now (it is up and not cut off).
    private let reachable: (String) -> Bool
    /// Log positions of the decision records of each seq in the current log.
    private var commitAt: [UInt64: Int] = [:]
    private var abortAt: [UInt64: Int] = [:]
    private var prepareAt: [UInt64: Int] = [:]
    /// How often the data directory was wiped.
    private(set) var wipes = 0

    init(name: String, id: String, context: SimContext, network: SimNetwork, checker: SimChecker,
         joined: Bool, reachable: @escaping (String) -> Bool) {
        self.name = name
        self.id = id
        self.reachable = reachable
        self.context = context
        self.network = network
        self.checker = checker
        participant = Participant(server: name)
        termination = Self.termination(context: context, me: id)
        if !joined { participant.finishReplay() }
    }

    private static func termination(context: SimContext, me: String) -> InDoubtTermination {
        InDoubtTermination(liveLimitMs: context.config.inDoubtLimitMs, askMaster: true, me: me)
    }

    /// The in-doubt seqs a restart would find (the durable log replayed).
    var inDoubtOnDisk: [UInt64] { replayedDurableLog.inDoubt }

    /// The nodes named as participants of the transactions this replica holds in doubt: the replicas whose
    /// answers ("prepared", "never prepared") may be all that can decide them. Up, the live participant's
    /// (a superset of what its durable log holds); down, what its durable log holds, replayed once per crash.
    var inDoubtParticipants: Set<String> {
        if up {
            guard !participant.inDoubt.isEmpty else { return [] }
            return Set(participant.stat(nowMs: 0).inDoubt.flatMap { $0.members.map(\.host) })
        }
        if let cached = inDoubtParticipantsWhileDown { return cached }
        let onDisk = Set(replayedDurableLog.stat(nowMs: 0).inDoubt.flatMap { $0.members.map(\.host) })
        inDoubtParticipantsWhileDown = onDisk
        return onDisk
    }
    private var inDoubtParticipantsWhileDown: Set<String>?

    private var replayedDurableLog: Participant {
        var replayed = Participant(server: name)
        for record in log[..<durable] { replayed.replay(record, nowMs: 0) }
        return replayed
    }

    /// Whether the durable log leaves this replica in sync (its last RESET or JOIN is a JOIN): it holds a copy
    /// of the data that a wipe would destroy.
    var holdsData: Bool {
        for record in log[..<durable].reversed() {
            if case .join = record { return true }
            if case .reset = record { return false }
        }
        return false
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

    // MARK: - Serving requests

    /// A request arrived on `connection` (from a master or a peer).
    func serve(_ request: WireRequest, call: UInt64, connection: Int) {
        var order = orders[connection] ?? ReplyOrder()
        let slot = order.nextSlot
        order.nextSlot += 1
        orders[connection] = order
        let id = newRequestID()
        routes[id] = .remote(connection: connection, slot: slot, call: call, request: request)
        if let seq = request.seq, request.command == .put || request.command == .del {
            checker.prepareArrived(seq, request, at: name)
        }
        execute(participant.handle(.request(request, id, nowMs: context.nowMs, link: network.connection(connection).link)))
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
        if case .prepare(let seq, _, _) = record { prepareAt[seq] = position }
        if case .prepareTxn(let seq, _, _, _) = record { prepareAt[seq] = position }
        if case .commit(let seq) = record, commitAt[seq] == nil { commitAt[seq] = position }
        if case .abort(let seq) = record, abortAt[seq] == nil { abortAt[seq] = position }
        context.trace("\(name): append \(record.brief)")
        checker.replicaAppended(self, record)
    }

    private func release(_ id: Participant.RequestID, _ reply: WireReply) {
        parked.removeAll { $0 == id }
        guard case .remote(let connection, let slot, let call, let request)? = routes.removeValue(forKey: id) else { return }
        var reply = reply
        if context.mutation == .qryLiesAborted, request.command == .qry, reply.code == .committed,
           !network.connection(connection).client.hasPrefix("master") {
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

    /// One pass of the resolver: asks about every eligible in-doubt seq not already being asked about.
    func resolverPass() {
        run(termination.handle(.tick(inDoubt: participant.stat(nowMs: context.nowMs).inDoubt)))
    }

    private func run(_ actions: [InDoubtTermination.Action]) {
        for action in actions {
            switch action {
            case .ask(let target, let seq):
                let node: String?
                switch target {
                case .master: node = "master"
                case .peer(let member): node = member.host
                }
                guard let node, reachable(node) else {
                    context.trace("\(name): cannot reach \(target) about \(seq)")
                    run(termination.handle(.answer(seq: seq, from: target, nil)))
                    continue
                }
                let connection = network.open(client: name, server: node)
                let call = context.newCallID()
                questions[call] = (seq, target, connection)
                context.trace("\(name): in doubt about \(seq), asking \(target) (\(node))")
                network.send(on: connection, from: name, .request(call: call, WireRequest(seq: seq, command: .qry)))
            case .decide(let seq, let committed):
                context.trace("\(name): learned that \(seq) \(committed ? "committed" : "aborted")")
                let id = newRequestID()
                routes[id] = .local
                execute(participant.handle(.request(committed ? .com(seq) : .abrt(seq), id, nowMs: context.nowMs)))
                context.stats.resolutions += 1
            }
        }
    }

    /// The answer to one of this replica's `qry` calls (nil: none came, the connection broke first).
    func answer(_ reply: WireReply?, call: UInt64) {
        guard let question = questions.removeValue(forKey: call) else { return }
        context.trace("\(name): \(question.target) says \(reply.map { $0.code.rawValue } ?? "nothing") about \(question.seq)")
        run(termination.handle(.answer(seq: question.seq, from: question.target, reply)))
    }

    // MARK: - Faults

    func connectionClosed(_ connection: Int) {
        orders[connection] = nil
        for call in questions.keys.sorted() where questions[call]?.connection == connection { answer(nil, call: call) }
    }

    func crash() {
        up = false
        inDoubtParticipantsWhileDown = nil
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
        termination = Self.termination(context: context, me: id)
        participant = Participant(server: name)
        context.trace("\(name): CRASH (lost \(lost) unsynced records)")
    }

    /// The data directory is lost with the process (a new disk): it restarts empty and out of sync.
    func wipe() {
        crash()
        log = []
        durable = 0
        commitAt = [:]
        abortAt = [:]
        prepareAt = [:]
        wipes += 1
        checker.replicaWiped(self)
        context.trace("\(name): WIPED")
    }

    /// Starts the process again on its log, as the id cluster.yaml gives its node now.
    func restart(id: String) {
        self.id = id
        termination = Self.termination(context: context, me: id)
        var fresh = Participant(server: name)
        for record in log { fresh.replay(record, nowMs: context.nowMs) }
        fresh.finishReplay()
        participant = fresh
        up = true
        context.trace("\(name): restart, replayed \(log.count) records, in doubt \(participant.inDoubt), "
            + "joined \(participant.joined)")
    }
}
