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

/// One seeded run of a cluster: the real master rules (`TransactionManager`) and replica rules (`Participant`,
/// `InDoubtTermination`) over a simulated network, disks and timers. Random steps with faults, then healing to
/// quiescence. Every step is one scheduler choice (deliver a message, fsync a log, fire a timer, crash, wipe or
/// restart a process, reload the configuration, ...); the checker sees every event, so a violation is reported at
/// the step that caused it.
///
/// Faults (after the new cluster has settled): a stream that stalls until TCP gives up (the connection closes,
/// losing what was in flight); connection resets, where the requests a client wrote before closing may still
/// run on the server after its later ones; partitions cutting one replica off from the masters for a while;
/// replica crashes (unsynced records lost) and wipes (a new, empty disk), with the state transfers that follow;
/// master crashes, also right after any file action or state write of its own, start-up and compaction included;
/// decision-log directories restored from a cold backup; a second master started on the same directory; and
/// edits of cluster.yaml that remove a replica, add one back with its old data, move one to another node or add
/// a new one, reloaded at once or read at the next start. Duplicates come from the protocol itself (redelivered
/// `com`, repeated `stat` and `memb`, retried transfers) and from requests that run after their client gave up.
final class Simulation {
    let config: SimConfig
    let context: SimContext
    let network: SimNetwork
    let checker: SimChecker
    let disk = SimMasterDisk()
    private(set) var replicas: [SimReplica] = []
    private(set) var master: SimMaster!
    private(set) var second: SimMaster!
    /// What cluster.yaml says now: replica id -> node. The master reads it at start and at a reload.
    private(set) var file: [(id: String, node: String)] = SimConfig.replicaNodes.map { ($0, $0) }
    /// Replicas reloads removed (id -> node), which a later reload may add back with their old data.
    private var removed: [(id: String, node: String)] = []
    private var backups: [(files: [UInt64: SimMasterDisk.File], state: MasterState?)] = []
    private var nextReplicaNumber = 4
    /// Replica nodes a partition cuts off from the masters (each way); replicas still reach one another.
    private var cutOff: Set<String> = []
    /// Which of the master's timers healing fires next when nothing else moves.
    private var timerTurn = 0

    init(config: SimConfig, trace: SimContext.TraceMode = .off) {
        self.config = config
        context = SimContext(config: config, trace: trace)
        network = SimNetwork()
        checker = SimChecker(context: context)
        replicas = (SimConfig.replicaNodes + SimConfig.spareNodes).map { name in
            SimReplica(name: name, id: name, context: context, network: network, checker: checker, joined: false,
                       reachable: { [unowned self] node in reachable(node, from: name) })
        }
        master = makeMaster(node: "master", instance: 1)
        second = makeMaster(node: "master2", instance: 2)
        checker.attach(replicas: replicas)
    }

    private func makeMaster(node: String, instance: Int) -> SimMaster {
        SimMaster(node: node, instance: instance, context: context, network: network, checker: checker, disk: disk,
                  settings: { [unowned self] in settings() },
                  replicaIsUp: { [unowned self] in replica($0)?.up == true && !cutOff.contains($0) },
                  keyRead: { [unowned self] node, key in read(key, on: node) })
    }

    /// A `get` of `key` on `node`, answered at once: nil when the replica cannot be reached; for a key locked by
    /// an undecided transaction, the answer of a read whose wait for the decision ran out.
    private func read(_ key: [UInt8], on node: String) -> WireReply? {
        guard let target = replica(node), target.up, !cutOff.contains(node), target.participant.joined else { return nil }
        if let holder = target.participant.lockHolder(of: key) {
            return WireReply(status: false, code: .timeout, message: "key is locked by undecided transaction \(holder); "
                + "retry later", seq: nil, server: node)
        }
        guard let entry = target.participant.store[key] else {
            return WireReply(status: false, code: .notFound, message: "not found", seq: nil, server: node)
        }
        return WireReply(status: true, code: .ok, message: "", seq: entry.version, server: node, value: entry.value)
    }

    func settings() -> TransactionManager.Settings {
        var settings = TransactionManager.Settings(
            masterID: "m1",
            replicas: file.map { ClusterConfig.Replica(id: $0.id, host: $0.node, port: 7000, dataDir: "/data/\($0.node)") },
            timeouts: ClusterConfig.Timeouts(), inFlightMax: config.maxInFlight, compactBytes: config.compactBytes)
        settings.availability = config.availability
        return settings
    }


    func run() -> SimResult {
        defer { checker.detach() }
        let ejection = "eject after \(config.availability.ejectAfterMs) ms (floor "
            + "\(config.availability.minInSync(of: file.count)))"
        context.trace("config: \(config.network.rawValue) network, \(config.steps) steps, up to \(config.maxWrites) "
            + "writes (\(config.maxInFlight) at once), \(config.keys.count) keys, partition \(config.partitionPercent)%, "
            + "fault weight \(config.faultWeight), reload weight \(config.reloadWeight), in-doubt limit "
            + "\(config.inDoubtLimitMs) ms, compaction at \(config.compactBytes) bytes, second master "
            + "\(config.secondMaster), \(ejection), mutation \(config.mutation.rawValue)")
        master.start(lock: SimMaster.locksDirectory)
        settle()
        let last = context.step + config.steps
        while context.step < last && checker.violation == nil {
            context.step += 1
            randomStep()
        }
        context.stats.steps = context.step
        if checker.violation == nil { heal() }
        if checker.violation == nil {
            checker.checkQuiescent(master: master, configured: file.compactMap { replica($0.node) })
        }
        context.stats.seeds = 1
        return SimResult(seed: config.seed, config: config, stats: context.stats, failure: checker.violation,
                         failedStep: checker.violation == nil ? nil : context.step, trace: context.tail)
    }

    // MARK: - Random steps

    private func randomStep() {
        var weights: [Int] = []
        var actions: [() -> Void] = []
        func option(_ weight: Int, _ action: @escaping () -> Void) {
            guard weight > 0 else { return }
            weights.append(weight)
            actions.append(action)
        }
        let random = { (bound: Int) in self.context.random.below(bound) }
        let deliverable = network.deliverable()
        if !deliverable.isEmpty {
            option(400) { self.deliver(deliverable[random(deliverable.count)]) }
            if config.network == .chaos { option(10) { self.drop(deliverable[random(deliverable.count)]) } }
        }
        for process in [master!, second!] where process.up {
            if context.stats.writes < config.maxWrites && (process.manager?.inFlight ?? 0) < config.maxInFlight {
                option(process === master ? 80 : 30) { process.write(self.randomOp()) }
            }
            if !process.inbox.isEmpty { option(250) { process.processInbox() } }
            if disk.unsynced > 0 {
                option(60) { process.syncDecisions(count: random(2) == 0 ? nil : 1 + random(self.disk.unsynced)) }
            }
            for timer in process.timers { option(Self.weight(of: timer)) { process.fire(timer) } }
            option(config.readWeight) { process.read(self.config.keys[random(self.config.keys.count)]) }
            addLeaseSteps(process, option)
        }
        for replica in replicas where replica.up {
            if replica.unsynced > 0 { option(50) { replica.sync(count: random(2) == 0 ? nil : 1 + random(replica.unsynced)) } }
            if !replica.parked.isEmpty { option(10) { replica.timeOutRead() } }
            if !replica.participant.inDoubt.isEmpty { option(10) { replica.resolverPass() } }
        }
        addFaults(option)
        actions[context.random.weighted(weights)]()
    }

    /// The lease side of a running master: its load, its expiries, and clients' lease requests.
    private func addLeaseSteps(_ process: SimMaster, _ option: (Int, @escaping () -> Void) -> Void) {
        guard let leases = process.leases else { return }
        if leases.loadDue { option(20) { process.startLeaseLoad() } }
        if leases.hasDueWork { option(40) { leases.tick() } }
        guard leases.loading == .loaded, context.leaseRequests < config.maxLeaseRequests,
              (process.manager?.inFlight ?? 0) < config.maxInFlight else { return }
        option(config.leaseWeight) {
            self.context.leaseRequests += 1
            leases.clientRequest(keys: self.config.keys)
        }
    }

    private static func weight(of timer: TransactionManager.Timer) -> Int {
        switch timer {
        case .probe, .redeliver, .transferRetry: return 15
        case .transferStep, .phase, .admission, .pause, .closeLinks: return 3
        // Rarely, so that replicas flap (ejected again before their count starts over) and are held off.
        case .ejectionCalm: return 1
        // Timers fire in any order here, so an ejection may come as early as the first failure.
        case .eject: return 5
        }
    }

    private func addFaults(_ option: (Int, @escaping () -> Void) -> Void) {
        guard context.faultsEnabled else { return }
        let weight = config.faultWeight
        if master.up {
            option(weight) { self.crash(self.master) }
            option(weight) { self.master.crashAfterPersists = self.context.random.below(4) }
        } else {
            option(60) { self.restartMaster() }
        }
        // A cold backup of the decision-log directory (taken while the master is stopped, as OPERATIONS says).
        if !master.up { option(weight) { self.backups.append(self.disk.backup()) } }
        if config.secondMaster {
            if second.up {
                option(20) { self.crash(self.second) }
            } else {
                option(weight) {
                    self.context.stats.secondMasters += 1
                    self.second.start(lock: SimMaster.locksDirectory)
                }
            }
        }
        let inDoubtNames = replicas.map { ($0.name, $0.inDoubtParticipants) }
        for replica in replicas {
            if replica.up {
                option(weight) { self.crash(replica) }
                // A disk is lost only while another participant holds the data: destroying the last copy loses
                // writes by definition, and is not what the checker looks for.
                // Nor while it is a participant of a transaction another replica holds in doubt: its answer may be
                // the only evidence left (a master whose decision log was restored from a backup does not know the
                // outcome), and a transaction no one can decide blocks by definition.
                let witness = inDoubtNames.contains { $0.0 != replica.name && $0.1.contains(replica.name) }
                if !witness, holdersOtherThan(replica.name) > 0 {
                    option(weight) { self.wipe(replica) }
                }
            } else {
                option(50) { self.restart(replica) }
            }
        }
        let open = network.openConnectionIDs
        if !open.isEmpty {
            option(2 * weight) {
                let id = open[self.context.random.below(open.count)]
                self.context.stats.resets += 1
                let keeping = self.context.random.below(2) == 0
                self.context.trace("reset connection c\(id)\(keeping ? " (requests sent still arrive)" : "")")
                self.close(id, keepingRequests: keeping)
            }
        }
        // A partition between the masters and one replica: what was in flight between them is lost, neither side
        // can connect to the other until it heals, and the replica still reaches its peers.
        let reachableReplicas = replicas.filter { $0.up && !cutOff.contains($0.name) }
        if !reachableReplicas.isEmpty {
            option(weight) {
                let node = self.context.random.pick(reachableReplicas).name
                self.context.stats.partitions += 1
                self.context.trace("partition: \(node) cut off from the masters")
                self.cutOff.insert(node)
                for id in self.network.openConnections(of: node) {
                    let connection = self.network.connection(id)
                    if self.masterProcess(connection.peer(of: node)) != nil { self.close(id) }
                }
            }
        }
        if !cutOff.isEmpty {
            option(30) {
                let node = self.context.random.pick(self.cutOff.sorted())
                self.context.trace("partition healed: \(node)")
                self.cutOff.remove(node)
            }
        }
        addReloads(option)
    }

    /// Participants of the master's last view, other than `node`, whose disk holds the data and that cluster.yaml
    /// keeps as they are (with no reload under way that could change that).
    private func holdersOtherThan(_ node: String) -> Int {
        guard master.manager?.reloadPending != true else { return 0 }
        let persisted = Set((disk.state?.members ?? []).map(\.replica))
        // With ejection on, a holder that is down may be ejected at any moment, leaving the wiped one as the only
        // participant (with a floor of 1): only holders that are up count then.
        let ejecting = config.availability.ejectAfterMs > 0
        return master.lastParticipants.filter { member in
            member.host != node && persisted.contains(member) && replica(member.host)?.holdsData == true
                && (!ejecting || replica(member.host)?.up == true)
                && file.contains { $0.id == member.id && $0.node == member.host }
        }.count
    }

    /// Whether cluster.yaml as `changed` still names an in-sync replica that holds the data (an edit that replaces
    /// every such replica at once leaves nothing to copy from). In sync is what the decision-log directory says
    /// (the membership persisted last, by whichever master ran), not the last view of one master process: that
    /// can be older than a later run's, and name a replica that run found out of sync.
    private func keepsAHolder(_ changed: [(id: String, node: String)]) -> Bool {
        let members = disk.state?.members?.map(\.replica) ?? master.lastParticipants
        return members.contains { member in
            changed.contains { $0.id == member.id && $0.node == member.host } && replica(member.host)?.holdsData == true
        }
    }

    /// Edits of cluster.yaml: remove a replica, add a removed one back (with its old data), move one to a spare
    /// node, add a spare node as a new replica; each reloaded at once or left for the master's next start.
    private func addReloads(_ option: (Int, @escaping () -> Void) -> Void) {
        let weight = config.reloadWeight
        // One edit at a time, as an operator waits for the answer to a reload before the next.
        guard weight > 0, master.manager?.reloadPending != true else { return }
        let inUse = Set(file.map(\.node))
        let spares = (SimConfig.replicaNodes + SimConfig.spareNodes).filter { node in
            !inUse.contains(node) && !removed.contains { $0.node == node }
        }
        if file.count > 2 {
            let index = context.random.below(file.count)
            var changed = file
            changed.remove(at: index)
            if keepsAHolder(changed) {
                option(weight) {
                    self.removed.append(self.file.remove(at: index))
                    self.edited("remove \(self.removed.last!.id)")
                }
            }
        }
        if !removed.isEmpty {
            option(weight) {
                let entry = self.removed.remove(at: self.context.random.below(self.removed.count))
                self.file.append(entry)
                self.edited("add \(entry.id) back on \(entry.node)")
            }
        }
        if let spare = spares.first {
            let index = context.random.below(file.count)
            var changed = file
            changed[index].node = spare
            if keepsAHolder(changed) {
                option(weight) {
                    self.file[index].node = spare
                    self.edited("move \(self.file[index].id) to \(spare)")
                }
            }
            option(weight) {
                let id = "r\(self.nextReplicaNumber)"
                self.nextReplicaNumber += 1
                self.file.append((id, spare))
                self.edited("add \(id) on \(spare)")
            }
        }
    }

    private func edited(_ what: String) {
        context.stats.reloads += 1
        if master.up && context.random.percent(80) {
            context.trace("cluster.yaml: \(what); reload")
            master.reload(settings())
        } else {
            context.trace("cluster.yaml: \(what) (the master reads it at its next start)")
        }
    }

    private func randomOp() -> WriteOp {
        let key = config.keys[context.random.below(config.keys.count)]
        if context.random.percent(25) { return .delete(key: key) }
        return .put(key: key, value: Array("v\(context.random.below(1000))".utf8))
    }

    // MARK: - Network

    func replica(_ name: String) -> SimReplica? { replicas.first { $0.name == name } }

    private func masterProcess(_ node: String) -> SimMaster? { [master!, second!].first { $0.node == node } }

    /// Whether `from` can open a connection to `node` now: it runs, and a master is not cut off by a partition.
    private func reachable(_ node: String, from: String) -> Bool {
        if let process = masterProcess(node) {
            return process.up && !cutOff.contains(from)
                && !(context.faultsEnabled && context.random.percent(config.partitionPercent))
        }
        return replica(node)?.up ?? false
    }

    private func deliver(_ index: Int) {
        let message = network.remove(at: index)
        context.trace("deliver \(message.brief)")
        switch message.payload {
        case .request(let call, let request):
            if let process = masterProcess(message.to) {
                if process.up { process.serve(request, call: call, connection: message.connection) }
            } else if let target = replica(message.to), target.up {
                target.serve(request, call: call, connection: message.connection)
            }
        case .reply(let call, let reply):
            if let process = masterProcess(message.to) {
                if process.up, process.receive(reply, call: call, connection: message.connection) {
                    close(message.connection)
                }
            } else if let target = replica(message.to), target.up {
                target.answer(reply, call: call)
                close(message.connection)  // a qry connection carries one question
            }
        }
    }

    /// A stream that stalls on a lost segment until TCP gives up: the message and everything after it on the
    /// connection are lost, and both ends learn the connection broke (TCP never loses data silently in the middle
    /// of a stream, and the master's links rely on that to pair replies with calls).
    private func drop(_ index: Int) {
        let message = network.inFlight[index]
        context.stats.drops += 1
        context.trace("stall \(message.brief)")
        close(message.connection)
    }

    /// Closes a connection and tells both ends (a master fails the calls still waiting on it). A client that
    /// closes its end may have requests on their way that the server still executes (`SimNetwork.close`).
    private func close(_ id: Int, keepingRequests: Bool = false) {
        let connection = network.connection(id)
        let lost = network.close(id, keepingRequests: keepingRequests)
        if lost > 0 { context.trace("c\(id) closed, \(lost) messages lost") }
        for node in [connection.client, connection.server] {
            if let process = masterProcess(node) {
                if process.up { process.connectionClosed(id) }
            } else {
                replica(node)?.connectionClosed(id)
            }
        }
    }

    // MARK: - Processes

    private func crash(_ process: SimMaster) {
        if process === master { context.stats.masterCrashes += 1 }
        process.crash()
        // What the master wrote before it died may still be read by the replicas.
        network.purge(messagesTo: process.node)
        for id in network.openConnections(of: process.node) { close(id, keepingRequests: context.random.below(2) == 0) }
    }

    private func restartMaster() {
        // Restored only as OPERATIONS allows: with nothing in doubt anywhere (a decision made after the backup and
        // delivered to no one is lost with the newer files, whatever the master does).
        // And only a backup whose membership is the one in force (the directory holds who is in sync too).
        let nothingInDoubt = replicas.allSatisfy { $0.inDoubtOnDisk.isEmpty }
        // And every configured replica in sync: the master waits for their seqs before it issues any.
        let members = Set((disk.state?.members ?? []).map(\.replica))
        let allInSync = settings().replicas.allSatisfy(members.contains)
        let usable = allInSync ? backups.filter { $0.state?.members == disk.state?.members } : []
        // And never under a running master: the second one may hold the directory while this one is down.
        let noMasterRuns = !master.up && !second.up
        if context.faultsEnabled && !usable.isEmpty && nothingInDoubt && noMasterRuns && context.random.percent(10) {
            context.stats.backupRestores += 1
            context.trace("master: decision log directory restored from a backup")
            disk.restore(usable[context.random.below(usable.count)])
            checker.decisionLogRestored()
        }
        master.start(lock: SimMaster.locksDirectory)
        if !master.up, let members = disk.state?.members, !members.isEmpty {
            // Refused: the file names none of the replicas in sync. The operator puts them back and starts again.
            for member in members where !file.contains(where: { $0.id == member.replica.id }) {
                removed.removeAll { $0.id == member.replica.id }
                file.append((member.replica.id, member.replica.host))
            }
            for member in members {
                if let index = file.firstIndex(where: { $0.id == member.replica.id }) { file[index].node = member.replica.host }
            }
            // A replica added on a node an in-sync one is put back on goes (the loader refuses two at one address;
            // the process on that node is the in-sync one's).
            let nodes = Set(members.map(\.replica.host))
            let ids = Set(members.map(\.replica.id))
            file.removeAll { !ids.contains($0.id) && nodes.contains($0.node) }
            context.trace("cluster.yaml: the in-sync replicas put back as they were")
            master.start(lock: SimMaster.locksDirectory)
        }
    }

    private func crash(_ replica: SimReplica) {
        context.stats.replicaCrashes += 1
        replica.crash()
        network.purge(messagesTo: replica.name)
        for id in network.openConnections(of: replica.name) { close(id, keepingRequests: context.random.below(2) == 0) }
    }

    private func wipe(_ replica: SimReplica) {
        context.stats.wipes += 1
        replica.wipe()
        network.purge(messagesTo: replica.name)
        for id in network.openConnections(of: replica.name) { close(id) }
    }

    private func restart(_ replica: SimReplica) {
        replica.restart(id: file.first { $0.node == replica.name }?.id ?? replica.name)
    }

    // MARK: - Healing

    /// A new cluster is set up before anything goes wrong: faults start once its replicas have bootstrapped.
    private func settle() {
        context.faultsEnabled = false
        var budget = config.quiescenceBudget
        while budget > 0 && checker.violation == nil && !isQuiescent, let action = nextHealingAction() {
            budget -= 1
            context.step += 1
            action()
        }
        context.trace("settled: the cluster bootstrapped, faults on")
        context.faultsEnabled = true
    }

    /// Stops faults and the second master, restarts every configured process, reloads the configuration file,
    /// then runs the cluster to quiescence: deliver everything, run every queued event, fsync everything, and only
    /// when nothing else moves fire timers and let in-doubt replicas ask.
    private func heal() {
        context.faultsEnabled = false
        context.trace("heal: faults off, restarting every process")
        cutOff = []
        if second.up { crash(second) }
        if !master.up { restartMaster() }
        master.crashAfterPersists = nil
        for entry in file { if let node = replica(entry.node), !node.up { restart(node) } }
        if master.manager?.settings.replicas != settings().replicas { master.reload(settings()) }
        var budget = config.quiescenceBudget
        while budget > 0 && checker.violation == nil, let action = nextHealingAction() {
            budget -= 1
            context.step += 1
            context.stats.quiescenceSteps += 1
            action()
        }
    }

    /// Whatever moves the cluster first; when nothing does, the master's timers and the in-doubt replicas'
    /// resolver passes in turn, until it is quiescent.
    private func nextHealingAction() -> (() -> Void)? {
        if let action = productiveHealingAction() { return action }
        guard !isQuiescent else { return nil }
        var turns: [() -> Void] = master.timers.map { timer in { self.master.fire(timer) } }
        // A reload the master refused (an ejection left none of the replicas it keeps in sync) is retried, as an
        // operator would once the cluster has resynced.
        if master.up, master.manager?.reloadPending == false, master.manager?.settings.replicas != settings().replicas {
            turns.append { self.master.reload(self.settings()) }
        }
        // Time passes a step at a time: leases no client keeps alive any more come due.
        if let leases = master.leases, !leases.isSettled { turns.append { leases.tick() } }
        for replica in replicas where replica.up && !replica.participant.inDoubt.isEmpty {
            turns.append { replica.resolverPass() }
        }
        guard !turns.isEmpty else { return nil }
        timerTurn += 1
        return turns[timerTurn % turns.count]
    }

    /// What the quiescence check expects: nothing running, syncing, unsynced, parked or in doubt.
    private var isQuiescent: Bool {
        guard master.isIdle, let view = master.view, view.syncing.isEmpty, master.leases?.isSettled == true else {
            return false
        }
        return file.allSatisfy { entry in replica(entry.node).map { $0.up && $0.isIdle && $0.participant.joined } ?? false }
    }

    private func productiveHealingAction() -> (() -> Void)? {
        if let first = network.deliverable().first { return { self.deliver(first) } }
        if !master.inbox.isEmpty { return { self.master.processInbox() } }
        if disk.unsynced > 0 { return { self.master.syncDecisions() } }
        if let replica = replicas.first(where: { $0.up && $0.unsynced > 0 }) { return { replica.sync() } }
        if let replica = replicas.first(where: { $0.up && !$0.parked.isEmpty }) { return { replica.timeOutRead() } }
        if let leases = master.leases {
            if leases.loadDue { return { self.master.startLeaseLoad() } }
            if leases.hasDueWork { return { leases.tick() } }
        }
        return nil
    }
}
