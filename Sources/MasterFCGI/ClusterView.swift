import Foundation
import KVCommon
import KVRuntime
import Logging
import NIOCore

/// The configuration in force and everything built from it. Requests take the current view once and use it
/// to the end, so a reload never changes the replica set under a running transaction.
final class ClusterView: @unchecked Sendable {
    let config: ClusterConfig
    let pool: ReplicaPool
    /// The configuration epoch: every accepted configuration (at start or by reload) gets the next number,
    /// persisted in `<decision_log_dir>/config-epoch` before it takes effect.
    let generation: Int
    let loadedAt: Date
    /// Configured replicas that are being synced: they neither vote nor serve reads.
    let syncing: Set<String>
    /// The replicas every write goes to (configured and not syncing), in configuration order.
    let participants: [String]
    /// The links reads may use (computed once: every read walks them).
    let readableLinks: [ReplicaLink]

    init(config: ClusterConfig, pool: ReplicaPool, generation: Int, syncing: Set<String>, loadedAt: Date = Date()) {
        self.config = config
        self.pool = pool
        self.generation = generation
        self.syncing = syncing
        self.loadedAt = loadedAt
        participants = config.replicas.map(\.id).filter { !syncing.contains($0) }
        readableLinks = pool.links.filter { !syncing.contains($0.replica.id) }
    }

    /// The same configuration with a different set of syncing replicas.
    func with(syncing: Set<String>) -> ClusterView {
        ClusterView(config: config, pool: pool, generation: generation, syncing: syncing, loadedAt: loadedAt)
    }
}

/// Holds the current `ClusterView` and replaces it on reload (SIGHUP or `POST /admin/reload`).
final class ClusterViews: @unchecked Sendable {
    struct ReloadReport {
        var ok: Bool
        var message: String
    }

    private let lock = NSLock()
    /// Serialises reloads (SIGHUP and POST /admin/reload may race).
    private let reloading = NSLock()
    private var view: ClusterView
    private var lastReloadError: String?
    /// Replicas that reloads removed (and that were not added back), for `/status`.
    private var removedReplicas: [ClusterConfig.Replica] = []
    private let group: EventLoopGroup
    private let gate: WriteGate
    private let epochPath: String
    private let onConnect: (ReplicaLink, WireReply) -> Void
    private let logger: Logger

    init(config: ClusterConfig, group: EventLoopGroup, gate: WriteGate, logger: Logger,
         onConnect: @escaping (ReplicaLink, WireReply) -> Void) throws {
        self.group = group
        self.gate = gate
        self.onConnect = onConnect
        self.logger = logger
        epochPath = config.master.decisionLogDir + "/config-epoch"
        let epoch = try Self.nextEpoch(path: epochPath)
        view = ClusterView(config: config, pool: ReplicaPool(config: config, group: group, onConnect: onConnect),
                           generation: epoch, syncing: [])
    }

    /// Reads the last configuration epoch, persists the next one, and returns it.
    private static func nextEpoch(path: String) throws -> Int {
        var previous = 0
        if FileManager.default.fileExists(atPath: path) {
            let text = String(decoding: try FileIO.readAll(path), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            previous = Int(text) ?? 0
        }
        try FileIO.writeAtomically(Array("\(previous + 1)\n".utf8), to: path)
        return previous + 1
    }

    /// Called after a reload with the ids of replicas that must be synced before they take part.
    var onNewReplicas: ([String]) -> Void = { _ in }

    /// Takes `replica` out of the write and read set (state transfer starting).
    func markSyncing(_ replica: String) {
        lock.lock()
        if view.config.replica(id: replica) != nil, !view.syncing.contains(replica) {
            view = view.with(syncing: view.syncing.union([replica]))
            logger.notice("\(replica) is out of sync: writes and reads go to the other replicas until it is synced")
        }
        lock.unlock()
    }

    /// Puts `replica` back into the write and read set (state transfer verified).
    func markJoined(_ replica: String) {
        lock.lock()
        if view.syncing.contains(replica) { view = view.with(syncing: view.syncing.subtracting([replica])) }
        lock.unlock()
    }

    var current: ClusterView {
        lock.lock()
        defer { lock.unlock() }
        return view
    }

    var removed: [ClusterConfig.Replica] {
        lock.lock()
        defer { lock.unlock() }
        return removedReplicas
    }

    var reloadError: String? {
        lock.lock()
        defer { lock.unlock() }
        return lastReloadError
    }

    /// Re-reads the configuration file. A file that fails validation changes nothing; settings that need a
    /// restart (the master's listen addresses, id, decision log, worker threads) keep their old values.
    /// Writes of the old epoch finish before the new replica set takes writes (bounded by the time-outs).
    func reload() -> ReloadReport {
        reloading.lock()
        defer { reloading.unlock() }
        let old = current
        let loaded: ClusterConfig
        do {
            loaded = try ClusterConfig.load(path: old.config.path)
        } catch {
            setReloadError("\(error)")
            logger.error("reload rejected, configuration epoch \(old.generation) stays in force: \(error)")
            return ReloadReport(ok: false, message: "reload rejected, the old configuration stays in force: \(error)")
        }
        var applied = loaded
        var ignored: [String] = []
        if loaded.master != old.config.master {
            applied.master = old.config.master
            ignored.append("master settings need a restart (systemctl restart kv-master)")
        }
        let epoch: Int
        do {
            epoch = try Self.nextEpoch(path: epochPath)
        } catch {
            setReloadError("cannot persist the configuration epoch: \(error)")
            return ReloadReport(ok: false, message: "reload failed, the old configuration stays in force: \(error)")
        }
        let pool = ReplicaPool(config: applied, group: group, reusing: old.pool, onConnect: onConnect)
        // A replica that is new to the configuration (or moved) may be empty or stale: sync it before it
        // takes part. Replicas that were syncing stay syncing.
        let added = applied.replicas.filter { replica in old.config.replica(id: replica.id) != replica }.map(\.id)
        let swap = { [self] in
            lock.lock()
            let syncing = view.syncing.union(added).filter { applied.replica(id: $0) != nil }
            view = ClusterView(config: applied, pool: pool, generation: epoch, syncing: Set(syncing))
            lastReloadError = nil
            let gone = old.config.replicas.filter { applied.replica(id: $0.id) == nil }
            removedReplicas = (removedReplicas.filter { applied.replica(id: $0.id) == nil && !gone.contains($0) }
                + gone)
            lock.unlock()
        }
        let drainMs = old.config.timeouts.prepareTimeoutMs + old.config.timeouts.commitTimeoutMs
        if gate.whilePaused(timeoutMs: drainMs, swap) == nil {
            logger.warning("reload: writes of epoch \(old.generation) still running after \(drainMs) ms; switching anyway")
            swap()
        }
        let dropped = old.pool.linksDropped(by: pool)
        if !dropped.isEmpty {
            // Transactions that started under the old view may still use these links; close them afterwards.
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(drainMs)) {
                for link in dropped { link.close() }
            }
        }
        for link in pool.links where !link.health.connected { link.send(.stat) { _ in } }
        let names = applied.replicas.map { "\($0.id)@\($0.address)" }.joined(separator: ", ")
        var message = "configuration epoch \(epoch) in force: replicas \(names)"
        if !ignored.isEmpty { message += "; " + ignored.joined(separator: "; ") }
        if !added.isEmpty { message += "; syncing \(added.joined(separator: ", ")) before they take part" }
        logger.notice("reloaded \(applied.path): \(message)")
        let notify = onNewReplicas
        DispatchQueue.global().async { notify(added) }
        return ReloadReport(ok: true, message: message)
    }

    private func setReloadError(_ text: String) {
        lock.lock()
        lastReloadError = text
        lock.unlock()
    }
}
