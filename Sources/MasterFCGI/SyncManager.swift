import Foundation
import KVCommon
import Logging

/// Decides which replicas need a state transfer and runs one `SyncJob` per replica at a time.
///
/// A replica needs one when a reload adds it (or moves it), or when it reports `joined: false` (a fresh or
/// wiped data directory). A brand-new cluster, where every replica reports `joined: false`, is bootstrapped
/// instead: all replicas are empty and therefore identical, so each is told to join.
final class SyncManager: @unchecked Sendable {
    private let views: ClusterViews
    private let gate: WriteGate
    private let dirty: DirtyKeys
    private let logger: Logger
    /// Told when a replica joins after its state transfer.
    var onJoined: (String) -> Void = { _ in }
    private let lock = NSLock()
    private var running: Set<String> = []
    private var progress: [String: SyncJob.Progress] = [:]

    init(views: ClusterViews, gate: WriteGate, dirty: DirtyKeys, logger: Logger) {
        self.views = views
        self.gate = gate
        self.dirty = dirty
        self.logger = logger
    }

    /// Starts the periodic check (every 500 ms) of which replicas are out of sync.
    func start() {
        views.onNewReplicas = { [weak self] ids in ids.forEach { self?.ensureSync($0) } }
        let thread = Thread { [self] in
            while true {
                evaluate()
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        thread.name = "sync-manager"
        thread.start()
    }

    /// The state transfer status of `replica`, if one is under way or failed last.
    func status(of replica: String) -> SyncJob.Progress? {
        lock.lock()
        defer { lock.unlock() }
        return progress[replica]
    }

    /// Looks at what every link last reported and starts what is needed.
    func evaluate() {
        let view = views.current
        let links = view.pool.links
        // Reconnect to every replica that is not connected: its first answer (`stat`) says whether it came back
        // with its data or empty (a wiped data directory), before any write or read relies on it.
        for link in links where !link.health.connected {
            link.send(.stat) { [link] result in
                if case .success(let reply) = result { link.note(stat: reply) }
            }
        }
        let states = links.map { $0.lastJoined }
        lock.lock()
        let idle = running.isEmpty
        lock.unlock()
        if !states.isEmpty, states.allSatisfy({ $0 == false }), idle {
            logger.notice("every replica is new and empty: bootstrapping the cluster (all join)")
            for link in links {
                link.send(WireRequest(seq: nil, command: .join)) { [link] result in
                    if case .success(let reply) = result, reply.status { link.send(.stat) { if case .success(let stat) = $0 { link.note(stat: stat) } } }
                }
            }
            return
        }
        // A replica out of sync can only copy from one in sync; with none known yet, wait.
        guard states.contains(where: { $0 == true }) else { return }
        for link in links where link.lastJoined == false || view.syncing.contains(link.replica.id) {
            ensureSync(link.replica.id)
        }
    }

    /// Runs a state transfer for `replica` unless one is already running.
    func ensureSync(_ replica: String) {
        lock.lock()
        guard !running.contains(replica) else {
            lock.unlock()
            return
        }
        running.insert(replica)
        lock.unlock()
        views.markSyncing(replica)
        let job = SyncJob(replica: replica, views: views, gate: gate, dirty: dirty, logger: logger) { [weak self] update in
            self?.lock.lock()
            self?.progress[replica] = update
            self?.lock.unlock()
        }
        let thread = Thread { [self] in
            if job.run() { onJoined(replica) }
            lock.lock()
            running.remove(replica)
            lock.unlock()
        }
        thread.name = "sync-\(replica)"
        thread.start()
    }
}
