import KVCommon

/// A master process: the real `TransactionManager`, executed the way `MasterNode` executes it, over the simulated
/// network (`SimNetwork`), decision-log directory (`SimMasterDisk`) and timers.
///
/// - Links: one connection per replica, opened on the first send; `.connected` is fed before the queued calls
///   go out, so the manager's `stat` leads (as in `ReplicaLink`). A closed connection fails its unanswered calls.
/// - Decision log: appends are not durable until the scheduler syncs them; a forced append's `.logged` is fed
///   only then. `rotate` syncs the old generation first, as `GroupCommitLog.rotate` does.
/// - Events the executor produces itself (a refused connection, a durable record) go to `inbox` and are fed at a
///   later step, as the event loop would run them in a later task.
/// - Timers are armed and cancelled as the manager says; the scheduler fires any armed one.
/// - `crash` loses everything in memory and what the disk had not synced (but a random prefix of it);
///   `crashAfterPersists` crashes it right after a file action or state write of its own, start-up included.
final class SimMaster {
    /// Whether a start takes the decision-log directory's lock (`DecisionLogFiles`).
    static let locksDirectory = true

    struct Link {
        var connection: Int
        var calls: [UInt64: TransactionManager.Call] = [:]
    }

    let node: String
    let instance: Int
    private let context: SimContext
    private let network: SimNetwork
    private let checker: SimChecker
    let disk: SimMasterDisk
    private let settings: () -> TransactionManager.Settings
    private let replicaIsUp: (String) -> Bool
    private let keyRead: (String, [UInt8]) -> WireReply?
    /// The lease side of the process (`LeaseKeeper`), from its start until it crashes.
    private(set) var leases: SimLeases?
    /// The listing of the reserved keys that loads the lease table: its call and connection.
    private var leaseListing: (call: UInt64, connection: Int)?
    private(set) var up = false
    private(set) var manager: TransactionManager?
    private var links: [ClusterConfig.Replica: Link] = [:]
    private(set) var timers: [TransactionManager.Timer] = []
    private(set) var inbox: [TransactionManager.Event] = []
    /// Forced appends not yet durable: (generation, records in the file once appended, token).
    private var forced: [(generation: UInt64, end: Int, token: DecisionLogToken)] = []
    private var feeding = false
    private var backlog: [TransactionManager.Event] = []
    private var queries: [TransactionManager.QueryID: (connection: Int, call: UInt64)] = [:]
    private var reads: [UInt64: (read: Int, key: [UInt8], replica: String)] = [:]
    private var nextID: UInt64 = 1
    /// The seq epoch as last persisted, which a new link's handshake states (as `MasterNode`'s `LinkEpoch`).
    private var linkEpoch: UInt64 = 0
    private var starts = 0
    /// Replicas this run ejected that have not rejoined yet (for the rejoin count).
    private var ejectedNow: Set<String> = []
    private var handshakeLink: MasterLink { MasterLink(master: manager!.linkIdentity, epoch: linkEpoch) }
    /// The participants of the last view this process published (kept across its crashes).
    private(set) var lastParticipants: [ClusterConfig.Replica] = []
    /// Crash right after this many more persist points (nil: not armed).
    var crashAfterPersists: Int?

    init(node: String, instance: Int, context: SimContext, network: SimNetwork, checker: SimChecker, disk: SimMasterDisk,
         settings: @escaping () -> TransactionManager.Settings, replicaIsUp: @escaping (String) -> Bool,
         keyRead: @escaping (String, [UInt8]) -> WireReply?) {
        self.node = node
        self.instance = instance
        self.context = context
        self.network = network
        self.checker = checker
        self.disk = disk
        self.settings = settings
        self.replicaIsUp = replicaIsUp
        self.keyRead = keyRead
    }

    var view: MembershipView? { manager?.view }
    var isIdle: Bool {
        guard let manager else { return false }
        // A commit owed only to a replica that is no longer configured stays owed (see `parkedCommits`).
        return manager.inFlight == 0 && manager.pendingCommits == manager.parkedCommits && inbox.isEmpty
            && disk.unsynced == 0
    }

    // MARK: - Process life

    /// Starts the process on the disk as it is. With `lock`, a directory another live master holds is refused
    /// (the flock of `DecisionLogFiles`).
    func start(lock: Bool) {
        if lock, let holder = disk.lockHolder, holder != instance {
            context.trace("\(node): refused to start, the decision log directory is held by master #\(holder)")
            return
        }
        starts += 1
        let candidate = TransactionManager(settings: settings(), recovered: disk.state, decisions: disk.generations,
                                           run: "\(instance).\(starts)")
        if let refusal = candidate.startRefusal {
            context.trace("\(node): refused to start: \(refusal)")
            return
        }
        disk.lockHolder = instance
        up = true
        disk.open()
        manager = candidate
        leases = makeLeases()
        checker.masterStarted(instance, history: candidate.history)
        context.trace("\(node): start, state \(String(describing: disk.state)), generations \(disk.generations.map(\.number))")
        feed(.start)
    }

    func crash() {
        guard up else { return }
        up = false
        manager = nil
        leases = nil
        leaseListing = nil
        links = [:]
        timers = []
        inbox = []
        forced = []
        backlog = []
        queries = [:]
        reads = [:]
        feeding = false
        crashAfterPersists = nil
        for case .commit(let seq, _, _, _) in disk.crash(random: &context.random) {
            checker.masterCommitDurable(seq, master: instance)
        }
        if disk.lockHolder == instance { disk.lockHolder = nil }
        context.trace("\(node): CRASH")
    }

    // MARK: - Events in

    func feed(_ event: TransactionManager.Event) {
        guard up, manager != nil else { return }
        guard !feeding else {
            backlog.append(event)
            return
        }
        feeding = true
        var next: TransactionManager.Event? = event
        while let current = next, up {
            execute(manager!.handle(current))
            next = backlog.isEmpty ? nil : backlog.removeFirst()
        }
        feeding = false
    }

    func processInbox() {
        guard up, !inbox.isEmpty else { return }
        feed(inbox.removeFirst())
    }

    func fire(_ timer: TransactionManager.Timer) {
        guard let index = timers.firstIndex(of: timer) else { return }
        timers.remove(at: index)
        context.trace("\(node): timer \(timer)")
        feed(.timer(timer))
    }

    func write(_ op: WriteOp) {
        let id = newID()
        context.stats.writes += 1
        context.trace("\(node): write #\(id) \(op.brief)")
        feed(.write(id, TransactionManager.WriteIntent(op)))
    }

    func reload(_ new: TransactionManager.Settings) {
        context.trace("\(node): reload to \(new.replicas.map { "\($0.id)@\($0.host)" })")
        feed(.reload(new, newID(), notes: []))
    }

    /// fsync of the decision log: the first `count` unsynced records (all when nil) become durable.
    func syncDecisions(count: Int? = nil) {
        let synced = disk.sync(count: count)
        noteDurable(synced)
    }

    private func noteDurable(_ records: [DecisionRecord]) {
        guard !records.isEmpty else { return }
        context.trace("\(node): fsync \(records.count) decision records")
        for case .commit(let seq, _, _, _) in records { checker.masterCommitDurable(seq, master: instance) }
        let durable = disk.files.mapValues(\.durable)
        func isDurable(_ item: (generation: UInt64, end: Int, token: DecisionLogToken)) -> Bool {
            guard let synced = durable[item.generation] else { return true }
            return item.end <= synced
        }
        let ready = forced.filter(isDurable)
        forced.removeAll(where: isDurable)
        for item in ready where context.mutation != .comBeforeDurable { inbox.append(.logged(item.token)) }
    }

    // MARK: - Network

    /// A reply from a replica (on a link or a read connection); the first answer to a call wins. True when it
    /// answered a read, whose connection carries that one call.
    @discardableResult
    func receive(_ reply: WireReply, call: UInt64, connection: Int) -> Bool {
        if leaseListing?.call == call {
            leaseListing = nil
            leases?.listAnswered(reply)
            return true
        }
        if let read = reads.removeValue(forKey: call) {
            checker.readAnswered(read.read, key: read.key, reply: reply, replica: read.replica)
            return true
        }
        guard let (replica, link) = links.first(where: { $0.value.connection == connection }),
              let purpose = link.calls[call] else { return false }
        links[replica]?.calls[call] = nil
        feed(.replied(replica, purpose, reply))
        return false
    }

    /// A replica's `qry` on query_listen.
    func serve(_ request: WireRequest, call: UInt64, connection: Int) {
        guard request.command == .qry, let seq = request.seq else { return }
        let id = newID()
        queries[id] = (connection, call)
        feed(.query(id, seq: seq))
    }

    func connectionClosed(_ connection: Int) {
        if leaseListing?.connection == connection {
            leaseListing = nil
            leases?.listFailed()
        }
        for (replica, link) in links where link.connection == connection {
            links[replica] = nil
            for id in link.calls.keys.sorted() {
                inbox.append(.failed(replica, link.calls[id]!, "connection lost (\(replica.host))"))
            }
            inbox.append(.disconnected(replica))
        }
    }

    /// A client read: a `get` to a participant of the view, on a connection of its own.
    func read(_ key: [UInt8]) {
        guard var participants = manager?.view.participants, !participants.isEmpty else { return }
        if context.mutation == .ejectedReplicaServesReads, let manager {
            participants += manager.view.replicas.filter { manager.ejectedIDs.contains($0.id) }
        }
        let replica = context.random.pick(participants)
        guard replicaIsUp(replica.host) else { return }
        let call = newID()
        let read = checker.readStarted(key)
        reads[call] = (read, key, replica.host)
        let connection = network.open(client: node, server: replica.host)
        network.send(on: connection, from: node, .request(call: call, .get(key)))
    }

    // MARK: - Actions out

    private func execute(_ actions: [TransactionManager.Action]) {
        for action in actions {
            guard up else { return }
            switch action {
            case .send(let replica, let request, let call):
                if case .txn(let seq) = call, [.put, .del, .txn].contains(request.command) {
                    checker.prepareSent(seq, request, master: instance)
                }
                send(request, to: replica, call)
            case .answerWrite(let id, let answer):
                switch answer {
                case .outcome(let outcome) where outcome.committed: context.stats.commits += 1
                case .outcome: context.stats.aborts += 1
                case .refused: context.stats.refused += 1
                }
                context.trace("\(node): answer #\(id): \(answer.brief)")
                checker.writeAnswered(id, answer, master: instance)
                _ = leases?.answered(id, answer)
            case .changed(let index, let changes):
                checker.changesPublished(index, changes, master: instance)
                leases?.changed(changes)
            case .answerQuery(let id, let reply):
                guard let (connection, call) = queries.removeValue(forKey: id) else { continue }
                checker.masterAnswered(reply, master: instance)
                network.send(on: connection, from: node, .reply(call: call, reply))
            case .answerReload(_, _, let message):
                context.trace("\(node): \(message)")
            case .paused(let id):
                leases?.paused(id)
            case .pauseFailed(let id, _):
                leases?.pauseFailed(id)
            case .log(let file):
                execute(file)
                persistPoint("decision log \(file)")
            case .persist(var state):
                if context.mutation == .ejectionNotPersisted, let manager, let members = state.members {
                    // The ejected replicas stay in the persisted in-sync set, as they were before.
                    state.members = members + manager.view.replicas.filter { manager.ejectedIDs.contains($0.id) }
                        .map { MasterState.Member(replica: $0, joinedAt: 0) }
                }
                disk.write(state)
                linkEpoch = state.seqEpoch
                persistPoint("state file \(state.seqEpoch)/\(state.configEpoch)")
            case .startTimer(let timer, _):
                if !timers.contains(timer) { timers.append(timer) }
            case .cancelTimer(let timer):
                timers.removeAll { $0 == timer }
            case .publish(let view):
                lastParticipants = view.participants
                let rejoined = ejectedNow.filter { id in view.participants.contains { $0.id == id } }
                context.stats.ejectedRejoins += rejoined.count
                ejectedNow.subtract(rejoined)
                context.trace("\(node): view \(view.participants.map(\.id)) syncing \(view.syncing.sorted())")
            case .closeLink(let replica):
                // As MasterNode: the link goes, and what was written on it may still arrive.
                if let link = links.removeValue(forKey: replica) { network.close(link.connection, keepingRequests: true) }
            case .note(_, let text):
                context.trace("\(node): \(text)")
            case .ejected(let ejection):
                context.trace("\(node): ejected \(ejection.replica) (\(ejection.count) in a row)")
                context.stats.ejections += 1
                if ejection.holdMs > 0 { context.stats.heldOffResyncs += 1 }
                ejectedNow.insert(ejection.replica)
            }
        }
    }

    private func execute(_ file: DecisionJournal.FileAction) {
        switch file {
        case .append(let records, let token):
            disk.append(records)
            for case .end(let seq) in records { checker.masterEnded(seq) }
            guard let token else { return }
            if context.mutation == .comBeforeDurable {
                inbox.append(.logged(token))
            } else {
                forced.append((disk.current, disk.files[disk.current]!.records.count, token))
            }
        case .rotate(let generation):
            context.stats.compactions += 1
            noteDurable(disk.rotate(to: generation))
        case .delete(let generation):
            disk.delete(generation)
        }
    }

    /// A place where a crash leaves the disk in a state of its own (right after a file action or a state write).
    private func persistPoint(_ what: String) {
        guard let remaining = crashAfterPersists else { return }
        if remaining > 0 {
            crashAfterPersists = remaining - 1
            return
        }
        context.trace("\(node): crash point after \(what)")
        context.stats.persistPointCrashes += 1
        crash()
    }

    private func send(_ request: WireRequest, to replica: ClusterConfig.Replica, _ call: TransactionManager.Call) {
        if let link = links[replica], network.isOpen(link.connection) {
            let id = newID()
            links[replica]!.calls[id] = call
            network.send(on: link.connection, from: node, .request(call: id, request))
            return
        }
        guard replicaIsUp(replica.host) else {
            inbox.append(.failed(replica, call, "connection refused (\(replica.host))"))
            return
        }
        // Connect: the connection is up at once here, and `.connected` is handled before this call goes out (its
        // `stat` leads on the new connection, as `ReplicaLink` makes it).
        links[replica] = Link(connection: network.open(client: node, server: replica.host, link: handshakeLink))
        execute(manager!.handle(.connected(replica)))
        guard up else { return }
        send(request, to: replica, call)
    }

    // MARK: - Leases

    /// Starts reading the lease table (`LeaseKeeper.load`): writes pause, a participant lists the reserved keys.
    func startLeaseLoad() { leases?.startLoad(pause: newID()) }

    private func makeLeases() -> SimLeases {
        SimLeases(context: context, checker: checker, master: SimLeases.Master(
            submit: { [unowned self] intent, what, register in
                let id = newID()
                register(id)
                context.trace("\(node): write #\(id) \(what)")
                feed(.write(id, intent))
            },
            pause: { [unowned self] id in feed(.pause(id, timeoutMs: 5000)) },
            resume: { [unowned self] id in feed(.resume(id)) },
            list: { [unowned self] after in listReserved(after: after) },
            read: { [unowned self] key in
                guard let participants = manager?.view.participants, !participants.isEmpty else { return nil }
                return keyRead(context.random.pick(participants).host, key)
            },
            name: node, instance: instance))
    }

    /// Sends a page request for the reserved keys to a participant on a connection of its own.
    private func listReserved(after: [UInt8]) -> Bool {
        guard let participants = manager?.view.participants, !participants.isEmpty else { return false }
        let replica = context.random.pick(participants)
        guard replicaIsUp(replica.host) else { return false }
        let call = newID()
        let connection = network.open(client: node, server: replica.host)
        leaseListing = (call, connection)
        let request = WireRequest(seq: UInt64(SimLeases.pageLimit), command: .list, key: LeaseKeys.reserved, value: after)
        context.trace("\(node): list the leases on \(replica.host)")
        network.send(on: connection, from: node, .request(call: call, request))
        return true
    }

    private func newID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }
}
