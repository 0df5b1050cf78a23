import Foundation
import KVCommon
import KVRuntime
import Logging
import NIOCore
import Synchronization

/// Runs the master's `TransactionManager` on one event loop: feeds it every event (replica replies, link state,
/// timers, decision-log durability, client writes, queries, pauses, reloads) and executes its actions, in order.
/// The manager holds every rule; this class only does the IO and hands answers to the threads waiting for them
/// (FastCGI workers sleep until their write is answered: one wake-up per write).
final class MasterNode: @unchecked Sendable {
    let loop: EventLoop
    let startedAt = Date()
    private let logger: Logger
    private let lock: DirectoryLock
    private let decisions: DecisionLogFiles
    private let stateFile: MasterStateFile
    /// The cluster key (nil: links are not authenticated); the master proves itself with its role's key.
    let clusterKey: ClusterKey?
    /// Mutual TLS on every replica link and on `query_listen` (nil: plain TCP).
    let linkTLS: LinkTLS?
    private let ids = Atomic<UInt64>(1)
    /// Who waits for changes (blocking queries and streams), fed every published index.
    let watch: WatchHub
    /// Every lease and its keys, fed every published index too.
    let leases: LeaseBook
    // Event-loop state.
    private var manager: TransactionManager
    private var timers: DeadlineSweeper<TransactionManager.Timer>!
    private var links: [ClusterConfig.Replica: ReplicaLink] = [:]
    private var writeWaiters: [TransactionManager.WriteID: @Sendable (TransactionManager.WriteAnswer) -> Void] = [:]
    private var pauseWaiters: [TransactionManager.PauseID: Waiter<Bool>] = [:]
    private var reloadWaiters: [TransactionManager.ReloadID: Waiter<(ok: Bool, message: String)>] = [:]
    private var reloadConfigs: [TransactionManager.ReloadID: ClusterConfig] = [:]
    private var queryResponders: [TransactionManager.QueryID: (WireReply) -> Void] = [:]
    private var feeding = false
    private var backlog: [TransactionManager.Event] = []
    /// The manager's actions for the event being executed, reused from event to event.
    private var actionBuffer: [TransactionManager.Action] = []
    /// The full configuration the manager's settings came from (limits and time-outs for the router).
    private var config: ClusterConfig
    private var configLoadedAt = Date()
    /// Ejections with their times, for `/status` (on the loop).
    private var ejectionLog = EjectionLog()
    // Readable from any thread.
    private let published = Mutex<(view: MasterView?, reloadError: String?, tokens: AccessTokens?)>((nil, nil, nil))
    /// The seq epoch as last persisted: every new link's handshake states it (see `MasterFence`).
    private let linkEpoch = LinkEpoch()
    private let reloading = NSLock()
    /// Limits read on other threads for every line and request; an applied reload sets them (so a larger value
    /// passes the FastCGI body cap and the links' reply limit at once, also on connections already open).
    let replyLineLimit: SharedLimit
    let httpBodyLimit: SharedLimit

    /// `clusterKeyFile`, `tlsKeyFile`: where the keys are read instead of the files cluster.yaml names
    /// (`--cluster-key-file`, `--tls-key-file`).
    init(config: ClusterConfig, loop: EventLoop, logger: Logger, clusterKeyFile: String? = nil,
         tlsKeyFile: String? = nil) throws {
        self.config = config
        self.loop = loop
        self.logger = logger
        replyLineLimit = SharedLimit(config.limits.wireReplyBytesMax)
        httpBodyLimit = SharedLimit(config.limits.httpBodyBytesMax)
        clusterKey = try config.clusterKey(handedOver: clusterKeyFile)
        linkTLS = try LinkTLS.load(config, keyFile: tlsKeyFile)
        let tokens = try config.security.tokensFile.map(TokenFile.load)
        published.withLock { $0.tokens = tokens }
        // Before anything in the directory is read or written: a second master must not touch it.
        lock = try DirectoryLock(directory: config.master.decisionLogDir, process: "kv-master")
        stateFile = MasterStateFile(directory: config.master.decisionLogDir)
        let recovered = try stateFile.read()
        let settings = TransactionManager.Settings(config: config)
        if let refusal = TransactionManager.startRefusal(settings: settings, recovered: recovered) {
            throw MasterError.configuration(refusal)
        }
        decisions = try DecisionLogFiles(directory: config.master.decisionLogDir, loop: loop, logger: logger)
        manager = TransactionManager(settings: settings, recovered: recovered, decisions: decisions.recovered,
                                     run: String(UInt32.random(in: .min ... .max), radix: 16))
        watch = WatchHub(history: manager.history, settings: config.watch, logger: logger)
        leases = LeaseBook(limits: config.limits)
    }

    /// Starts the manager (persists the epochs, connects to every replica) and returns once that is done.
    func start() throws {
        try loop.submit { [self] in
            timers = DeadlineSweeper(loop: loop) { [unowned self] timer in feed(.timer(timer)) }
            decisions.onDurable = { [unowned self] token in logged(token) }
            feed(.start)
        }.wait()
    }

    // MARK: - From other threads

    /// The configuration and membership in force.
    var view: MasterView { published.withLock { $0.view! } }

    /// The view and the HTTP tokens in force, read together (once per request).
    var viewAndTokens: (MasterView, AccessTokens?) { published.withLock { ($0.view!, $0.tokens) } }

    var reloadError: String? { published.withLock { $0.reloadError } }

    /// Runs a write through two-phase commit and blocks the calling (worker) thread until it is answered.
    func write(_ intent: TransactionManager.WriteIntent) -> TransactionManager.WriteAnswer {
        let id = ids.add(1, ordering: .relaxed).oldValue
        let waiter = Waiter<TransactionManager.WriteAnswer>()
        loop.execute { [self] in
            writeWaiters[id] = { waiter.resolve($0) }
            feed(.write(id, intent))
        }
        return waiter.wait()
    }

    /// Runs a write through two-phase commit without blocking: `then` gets the answer on the event loop (it
    /// must not block; lease expiries run this way, many at once).
    func write(_ intent: TransactionManager.WriteIntent, then: @escaping @Sendable (TransactionManager.WriteAnswer) -> Void) {
        let id = ids.add(1, ordering: .relaxed).oldValue
        loop.execute { [self] in
            writeWaiters[id] = then
            feed(.write(id, intent))
        }
    }

    /// Holds writes back (waiting up to `timeoutMs` for the admitted ones to be answered), runs `body`, lets
    /// writes go on. Nil, without running `body`, if the running writes did not finish in time.
    func whilePaused<T>(timeoutMs: Int, _ body: () -> T) -> T? {
        let id = ids.add(1, ordering: .relaxed).oldValue
        let waiter = Waiter<Bool>()
        loop.execute { [self] in
            pauseWaiters[id] = waiter
            feed(.pause(id, timeoutMs: timeoutMs))
        }
        guard waiter.wait() else { return nil }
        let result = body()
        loop.execute { [self] in feed(.resume(id)) }
        return result
    }

    /// Re-reads cluster.yaml (SIGHUP or `POST /admin/reload`). A file that fails validation changes nothing;
    /// master settings keep their old values (they need a restart).
    func reload() -> (ok: Bool, message: String) {
        reloading.lock()
        defer { reloading.unlock() }
        let old = view.config
        var loaded: ClusterConfig
        let tokens: AccessTokens?
        do {
            loaded = try ClusterConfig.load(path: old.path)
            // The tokens file is read again at every reload: a token is revoked by removing it and reloading.
            tokens = try loaded.security.tokensFile.map(TokenFile.load)
        } catch {
            published.withLock { $0.reloadError = "\(error)" }
            logger.error("reload rejected, configuration epoch \(view.membership.configEpoch) stays in force: \(error)")
            return (false, "reload rejected, the old configuration stays in force: \(error)")
        }
        if let refusal = MasterReloadCheck.refusal(running: old, loaded: loaded, reports: askReplicas(loaded)) {
            published.withLock { $0.reloadError = refusal }
            logger.error("\(refusal)")
            return (false, refusal)
        }
        var notes: [String] = []
        if loaded.security.tokensFile != nil || old.security.tokensFile != nil {
            notes.append("HTTP tokens: \(tokens.map { "\($0.count) in force" } ?? "off (security.tokens_file unset)")")
        }
        // Read once at start, by every process of the cluster: a change takes a restart of all of them.
        if loaded.security.startOnlyFiles != old.security.startOnlyFiles {
            notes.append("security.cluster_key_file and security.tls need a restart of every process (they are read "
                + "at start)")
        }
        // nginx refuses larger bodies before the master sees them; it cannot be asked, so say exactly what to set.
        let body = loaded.limits.valueBodyBytesMax
        if body > old.limits.valueBodyBytesMax {
            notes.append("nginx must pass request bodies of up to \(body) bytes: set client_max_body_size "
                + "to at least \((body + 1023) / 1024)k in kv-locations.conf (/etc/nginx/snippets/) and reload nginx")
        }
        if loaded.master != old.master {
            loaded.master = old.master
            notes.append("master settings need a restart (systemctl restart kv-master)")
        }
        let id = ids.add(1, ordering: .relaxed).oldValue
        let waiter = Waiter<(ok: Bool, message: String)>()
        let applied = loaded
        loop.execute { [self] in
            reloadWaiters[id] = waiter
            reloadConfigs[id] = applied
            feed(.reload(.init(config: applied), id, notes: notes))
        }
        let answer = waiter.wait()
        published.withLock {
            if answer.ok {
                $0.tokens = tokens
                $0.reloadError = nil
            } else {
                $0.reloadError = answer.message
            }
        }
        if !answer.ok { logger.error("\(answer.message)") }
        return answer
    }

    /// `stat` of every replica `config` names, one connection each as role operator (new replicas have no link
    /// yet, and this must not disturb the links' order of requests), for `MasterReloadCheck`.
    private func askReplicas(_ config: ClusterConfig) -> [String: MasterReloadCheck.Report] {
        var reports: [String: MasterReloadCheck.Report] = [:]
        for replica in config.replicas {
            let handshake = clusterKey.map {
                LinkAuthClientHandler.initiator(key: $0.key(for: .operator), id: config.master.id,
                                                expectedServer: replica.id)
            }
            switch WireCall.call(WireRequest(seq: nil, command: .stat), host: replica.host, port: replica.port,
                                 timeoutMs: config.timeouts.connectTimeoutMs, group: loop, handshake: handshake,
                                 tls: linkTLS) {
            case .success(let reply) where reply.stat != nil: reports[replica.id] = .answered(reply.stat!)
            case .success(let reply): reports[replica.id] = .unreachable("it answered \(reply.code.rawValue): \(reply.message)")
            case .failure(let error): reports[replica.id] = .unreachable("\(error)")
            }
        }
        return reports
    }

    /// The counters `/status` shows, read on the loop.
    func status() -> MasterStatus {
        (try? loop.submit { [self] in
            MasterStatus(seqEpoch: manager.seqEpoch, inFlight: manager.inFlight, pendingCommits: manager.pendingCommits,
                         parkedCommits: manager.parkedCommits, decisionLogSyncs: decisions.syncCount,
                         transfers: Dictionary(uniqueKeysWithValues: manager.view.replicas.compactMap { replica in
                             manager.transferProgress(of: replica.id).map { (replica.id, $0) }
                         }), fenced: manager.fenced, ejected: manager.ejectedIDs, ejections: ejectionLog.entries)
        }.wait()) ?? MasterStatus(seqEpoch: 0, inFlight: 0, pendingCommits: 0, parkedCommits: 0, decisionLogSyncs: 0,
                                  transfers: [:], fenced: nil, ejected: [], ejections: [])
    }

    /// A replica's `seq;qry;;` on query_listen; `respond` runs on the loop (the query server's channel is there).
    func query(_ seq: UInt64, respond: @escaping (WireReply) -> Void) {
        let id = ids.add(1, ordering: .relaxed).oldValue
        let ask = { [self] in
            queryResponders[id] = respond
            feed(.query(id, seq: seq))
        }
        if loop.inEventLoop { ask() } else { loop.execute(ask) }
    }

    func close() { decisions.close() }

    // MARK: - On the loop

    /// Hands `event` to the manager on the loop (from any thread; events so handed keep their order).
    func submit(_ event: TransactionManager.Event) {
        loop.execute { [self] in feed(event) }
    }

    private func feed(_ event: TransactionManager.Event) {
        // Actions may produce events at once (a failed connect, say): they wait until these actions are done.
        guard !feeding else {
            backlog.append(event)
            return
        }
        feeding = true
        run(event)
        while !backlog.isEmpty { run(backlog.removeFirst()) }
        feeding = false
    }

    private func run(_ event: TransactionManager.Event) {
        manager.handle(event, into: &actionBuffer)
        execute(actionBuffer)
        // Unique again once `execute` returned: the next event reuses the storage.
        actionBuffer.removeAll(keepingCapacity: true)
    }

    private func execute(_ actions: [TransactionManager.Action]) {
        for action in actions {
            switch action {
            case .send(let replica, let request, let call):
                send(request, to: replica, call)
            case .answerWrite(let id, let answer):
                writeWaiters.removeValue(forKey: id)?(answer)
            case .changed(let index, let changes):
                leases.published(changes)
                watch.publish(index, changes)
            case .answerQuery(let id, let reply):
                queryResponders.removeValue(forKey: id)?(reply)
            case .answerReload(let id, let ok, let message):
                // A file the rules refused (after it parsed) must change nothing: not the limits the router
                // reads, not the replicas /status lists.
                if let applied = reloadConfigs.removeValue(forKey: id), ok {
                    config = applied
                    replyLineLimit.value = applied.limits.wireReplyBytesMax
                    httpBodyLimit.value = applied.limits.httpBodyBytesMax
                    configLoadedAt = Date()
                    publish(manager.view)
                }
                reloadWaiters.removeValue(forKey: id)?.resolve((ok, message))
            case .paused(let id):
                pauseWaiters.removeValue(forKey: id)?.resolve(true)
            case .pauseFailed(let id, _):
                pauseWaiters.removeValue(forKey: id)?.resolve(false)
            case .log(let file):
                if case .append(_, .commit?) = file { Failpoints.hit("master-after-votes") }
                decisions.execute(file)
            case .persist(let state):
                do {
                    try stateFile.write(state)
                } catch {
                    logger.critical("cannot persist \(stateFile.path): \(error); stopping")
                    exit(74)
                }
                linkEpoch.value.store(state.seqEpoch, ordering: .releasing)
            case .startTimer(let timer, let ms):
                timers.start(timer, afterMs: ms)
            case .cancelTimer(let timer):
                timers.cancel(timer)
            case .publish(let membership):
                publish(membership)
            case .closeLink(let replica):
                links.removeValue(forKey: replica)?.close()
            case .ejected(let ejection):
                ejectionLog.record(ejection)
            case .note(let level, let text):
                switch level {
                case .info: logger.info("\(text)")
                case .notice: logger.notice("\(text)")
                case .warning: logger.warning("\(text)")
                }
            }
        }
    }

    private func logged(_ token: DecisionLogToken) {
        if case .commit(let seq) = token {
            Failpoints.hit("master-after-commit-fsync")
            if Failpoints.isArmed("master-mid-commit-send"), let first = manager.participants(of: seq).first {
                // Deliver `com` to the first participant only, then crash (below the failpoint's hit count the
                // commit goes on as usual): the others stay in doubt with a durable COMMIT on the master.
                link(first).send(.com(seq)) { [self] _ in
                    Failpoints.hit("master-mid-commit-send")
                    feed(.logged(token))
                }
                return
            }
        }
        feed(.logged(token))
    }

    private func send(_ request: WireRequest, to replica: ClusterConfig.Replica, _ call: TransactionManager.Call) {
        link(replica).send(request) { [self] result in
            switch result {
            case .success(let reply): feed(.replied(replica, call, reply))
            case .failure(let failure): feed(.failed(replica, call, failure.reason))
            }
        }
    }

    private func link(_ replica: ClusterConfig.Replica) -> ReplicaLink {
        if let link = links[replica] { return link }
        let handshake: (@Sendable () -> HandshakeInitiator)? = clusterKey.map { clusterKey in
            let key = clusterKey.key(for: .master)
            let (masterID, replicaID, epoch) = (manager.linkIdentity, replica.id, linkEpoch)
            return {
                LinkAuthClientHandler.initiator(key: key, id: masterID, epoch: epoch.value.load(ordering: .acquiring),
                                                expectedServer: replicaID)
            }
        }
        let link = ReplicaLink(replica: replica, loop: loop, connectTimeoutMs: config.timeouts.connectTimeoutMs,
                               replyLimit: replyLineLimit, handshake: handshake,
                               tls: linkTLS,
                               onConnected: { [unowned self] link in feed(.connected(link.replica)) },
                               onDisconnected: { [unowned self] link in feed(.disconnected(link.replica)) })
        links[replica] = link
        return link
    }

    private func publish(_ membership: MembershipView) {
        let view = MasterView(config: config, membership: membership, links: membership.replicas.map(link),
                              loadedAt: configLoadedAt)
        published.withLock { $0.view = view }
    }
}

/// The seq epoch new links state, shared with the event loops that connect them.
final class LinkEpoch: Sendable {
    let value = Atomic<UInt64>(0)
}

/// The counters of `/status` that live in the manager.
struct MasterStatus {
    var seqEpoch: UInt64
    var inFlight: Int
    var pendingCommits: Int
    /// Of those, owed only to replicas cluster.yaml no longer names.
    var parkedCommits: Int
    var decisionLogSyncs: UInt64
    var transfers: [String: StateTransfer.Progress]
    /// Why this master is fenced (another one took over), nil while it runs the cluster.
    var fenced: String?
    /// Replicas out of the in-sync set because they were ejected, and the recent ejections.
    var ejected: [String]
    var ejections: [EjectionLog.Entry]
}

/// One answer handed from the event loop to a thread that sleeps until it arrives.
final class Waiter<Value: Sendable>: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private var value: Value?

    func resolve(_ value: Value) {
        self.value = value
        semaphore.signal()
    }

    func wait() -> Value {
        semaphore.wait()
        return value!
    }
}
