import KVCommon

/// What one seed did.
struct SimResult {
    var seed: UInt64
    var config: SimConfig
    var stats: SimStats
    /// The first invariant violation, if any.
    var failure: String?
    var failedStep: Int?
    /// The last traced events (when run with a trace tail).
    var trace: [String]
}

/// One seeded run of master + 3 replicas: random steps with faults, then healing to quiescence. Every step
/// is one scheduler choice (deliver a message, fsync a log, fire a time-out, crash or restart a node, ...);
/// the checker sees every event, so a violation is reported at the step that caused it.
final class Simulation {
    let config: SimConfig
    let context: SimContext
    let network: SimNetwork
    let checker: SimChecker
    let master: SimMaster
    let replicas: [SimReplica]

    init(config: SimConfig, trace: SimContext.TraceMode = .off) {
        self.config = config
        let context = SimContext(config: config, trace: trace)
        let network = SimNetwork(fifo: config.network == .tcp)
        let checker = SimChecker(context: context)
        let replicas = SimConfig.replicaNames.map {
            SimReplica(name: $0, context: context, network: network, checker: checker)
        }
        self.context = context
        self.network = network
        self.checker = checker
        self.replicas = replicas
        master = SimMaster(replicas: SimConfig.replicaNames, context: context, network: network, checker: checker,
                           replicaIsUp: { name in replicas.first { $0.name == name }?.up ?? false })
        checker.attach(master: master, replicas: replicas)
    }

    func run() -> SimResult {
        defer { checker.detach() }
        context.trace("config: \(config.network.rawValue) network, \(config.steps) steps, up to \(config.maxTransactions) "
            + "transactions (\(config.maxInFlight) at once), \(config.keys.count) keys, partition \(config.partitionPercent)%, "
            + "fault weight \(config.faultWeight), in-doubt limit \(config.inDoubtLimitMs) ms, mutation \(config.mutation.rawValue)")
        master.connectAll()
        while context.step < config.steps && checker.violation == nil {
            context.step += 1
            randomStep()
        }
        context.stats.steps = context.step
        if checker.violation == nil { heal() }
        if checker.violation == nil { checker.checkQuiescent() }
        context.stats.seeds = 1
        return SimResult(seed: config.seed, config: config, stats: context.stats, failure: checker.violation,
                         failedStep: checker.violation == nil ? nil : context.step, trace: context.tail)
    }

    // MARK: - Random steps

    private func randomStep() {
        var weights: [Int] = []
        var actions: [() -> Void] = []
        func option(_ weight: Int, _ action: @escaping () -> Void) {
            weights.append(weight)
            actions.append(action)
        }
        let random = { (bound: Int) in self.context.random.below(bound) }
        let deliverable = network.deliverable()
        if !deliverable.isEmpty {
            option(400) { self.deliver(deliverable[random(deliverable.count)]) }
            if config.network == .chaos {
                option(10) { self.drop(deliverable[random(deliverable.count)]) }
                option(10) { self.duplicate(deliverable[random(deliverable.count)]) }
            }
        }
        if master.up {
            if context.stats.transactions < config.maxTransactions && master.transactions.count < config.maxInFlight {
                option(80) { self.master.startTransaction(self.randomOp()) }
            }
            let ready = master.mailboxReady
            if !ready.isEmpty { option(250) { self.master.processMailbox(ready[random(ready.count)]) } }
            if !master.unsynced.isEmpty {
                option(60) { self.master.sync(count: random(2) == 0 ? nil : 1 + random(self.master.unsynced.count)) }
            }
            let waiting = master.timeoutCandidates
            if !waiting.isEmpty { option(3) { self.master.timeOut(waiting[random(waiting.count)]) } }
            if !master.delivery.isEmpty { option(20) { self.master.redeliver() } }
            if master.unsynced.isEmpty && !master.durableLog.isEmpty { option(5) { self.master.compact() } }
            option(10) {
                self.master.read(self.config.keys[random(self.config.keys.count)],
                                 from: SimConfig.replicaNames[random(SimConfig.replicaNames.count)])
            }
        }
        for replica in replicas where replica.up {
            if replica.unsynced > 0 {
                option(50) { replica.sync(count: random(2) == 0 ? nil : 1 + random(replica.unsynced)) }
            }
            if !replica.parked.isEmpty { option(10) { replica.timeOutRead() } }
            let eligible = replica.eligibleInDoubt(limitMs: config.inDoubtLimitMs)
            if !eligible.isEmpty {
                option(10) { self.resolve(replica, allowPartition: true, seq: eligible[random(eligible.count)]) }
            }
        }
        addFaults(option)
        actions[context.random.weighted(weights)]()
    }

    private func addFaults(_ option: (Int, @escaping () -> Void) -> Void) {
        guard context.faultsEnabled else { return }
        let weight = config.faultWeight
        if master.up {
            option(weight) { self.crashMaster() }
        } else {
            option(60) { self.master.restart() }
        }
        for replica in replicas {
            if replica.up {
                option(weight) { self.crash(replica) }
            } else {
                option(50) { replica.restart() }
            }
        }
        let open = network.openConnectionIDs
        if !open.isEmpty {
            option(2 * weight) {
                let id = open[self.context.random.below(open.count)]
                self.context.stats.resets += 1
                self.context.trace("reset connection c\(id)")
                self.close(id)
            }
        }
    }

    private func randomOp() -> WriteOp {
        let key = config.keys[context.random.below(config.keys.count)]
        if context.random.percent(25) { return .delete(key: key) }
        return .put(key: key, value: Array("v\(context.random.below(1000))".utf8))
    }

    // MARK: - Network

    private func replica(_ name: String) -> SimReplica? { replicas.first { $0.name == name } }

    private func deliver(_ index: Int) {
        let message = network.remove(at: index)
        context.trace("deliver \(message.brief)")
        switch message.payload {
        case .request(let call, let request):
            if message.to == SimMaster.name {
                if master.up { master.serve(request, call: call, connection: message.connection, from: message.from) }
            } else if let target = replica(message.to), target.up {
                target.serve(request, call: call, connection: message.connection)
            }
        case .reply(let call, let reply):
            if message.to == SimMaster.name {
                if master.up { master.receive(reply, call: call, connection: message.connection, from: message.from) }
            } else if let target = replica(message.to), target.up {
                let peers = replicas.filter { $0.name != target.name && $0.up }.map(\.name)
                target.answer(reply, call: call, from: message.from, peers: peers)
                close(message.connection)  // a qry connection carries one question
            }
        }
    }

    private func drop(_ index: Int) {
        let message = network.remove(at: index)
        context.stats.drops += 1
        context.trace("drop \(message.brief)")
    }

    private func duplicate(_ index: Int) {
        context.stats.duplicates += 1
        context.trace("duplicate \(network.inFlight[index].brief)")
        network.duplicate(at: index)
    }

    /// Closes a connection and tells both ends (the master fails the calls still waiting on it).
    private func close(_ id: Int) {
        let connection = network.connection(id)
        let lost = network.close(id)
        if lost > 0 { context.trace("c\(id) closed, \(lost) messages lost") }
        for node in [connection.client, connection.server] {
            if node == SimMaster.name {
                if master.up { master.connectionClosed(id) }
            } else {
                replica(node)?.connectionClosed(id)
            }
        }
    }

    // MARK: - Nodes

    private func crashMaster() {
        context.stats.masterCrashes += 1
        master.crash()
        for id in network.openConnections(of: SimMaster.name) { close(id) }
    }

    private func crash(_ replica: SimReplica) {
        context.stats.replicaCrashes += 1
        replica.crash()
        for id in network.openConnections(of: replica.name) { close(id) }
    }

    /// An in-doubt replica asks the master about one seq; if the master is down (or, with
    /// `allowPartition`, unreachable from here) it asks every peer that is up.
    private func resolve(_ replica: SimReplica, allowPartition: Bool, seq chosen: UInt64? = nil) {
        let inDoubt = replica.participant.inDoubt
        guard !inDoubt.isEmpty else { return }
        let seq = chosen ?? inDoubt[context.random.below(inDoubt.count)]
        if master.up && !(allowPartition && context.random.percent(config.partitionPercent)) {
            replica.ask(seq, target: SimMaster.name)
            return
        }
        let peers = replicas.filter { $0.name != replica.name && $0.up }
        if peers.isEmpty { context.trace("\(replica.name): \(seq) blocked, nobody to ask") }
        for peer in peers { replica.ask(seq, target: peer.name) }
    }

    // MARK: - Healing

    /// Stops faults, restarts every node, then runs the cluster to quiescence: deliver everything, run every
    /// mailbox, fsync everything, and only when nothing else moves fire time-outs, redeliver commits and let
    /// in-doubt replicas ask the master.
    private func heal() {
        context.faultsEnabled = false
        context.trace("heal: faults off, restarting every node")
        if !master.up { master.restart() }
        for replica in replicas where !replica.up { replica.restart() }
        var budget = config.quiescenceBudget
        while budget > 0 && checker.violation == nil, let action = nextHealingAction() {
            budget -= 1
            context.step += 1
            context.stats.quiescenceSteps += 1
            action()
        }
    }

    private func nextHealingAction() -> (() -> Void)? {
        if let first = network.deliverable().first { return { self.deliver(first) } }
        if let seq = master.mailboxReady.first { return { self.master.processMailbox(seq) } }
        if !master.unsynced.isEmpty { return { self.master.sync() } }
        if let replica = replicas.first(where: { $0.unsynced > 0 }) { return { replica.sync() } }
        if let replica = replicas.first(where: { !$0.parked.isEmpty }) { return { replica.timeOutRead() } }
        if let seq = master.timeoutCandidates.first { return { self.master.timeOut(seq) } }
        if !master.delivery.isEmpty { return { self.master.redeliver() } }
        if let replica = replicas.first(where: { !$0.participant.inDoubt.isEmpty }) {
            return {
                for seq in replica.participant.inDoubt { self.resolve(replica, allowPartition: false, seq: seq) }
            }
        }
        return nil
    }
}
