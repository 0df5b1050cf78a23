import Foundation
import KVCommon
import Logging
import NIOCore

/// The configuration in force and everything built from it. Requests take the current view once and use it
/// to the end, so a reload never changes the replica set under a running transaction.
final class ClusterView: @unchecked Sendable {
    let config: ClusterConfig
    let pool: ReplicaPool
    /// Counts accepted configurations since the master started (1 = the one loaded at start).
    let generation: Int
    let loadedAt: Date

    init(config: ClusterConfig, pool: ReplicaPool, generation: Int) {
        self.config = config
        self.pool = pool
        self.generation = generation
        loadedAt = Date()
    }
}

/// Holds the current `ClusterView` and replaces it on reload (SIGHUP or `POST /admin/reload`).
final class ClusterViews: @unchecked Sendable {
    struct ReloadReport {
        var ok: Bool
        var message: String
    }

    private let lock = NSLock()
    private var view: ClusterView
    private var lastReloadError: String?
    private let group: EventLoopGroup
    private let onConnect: (ReplicaLink, WireReply) -> Void
    private let logger: Logger

    init(config: ClusterConfig, group: EventLoopGroup, logger: Logger,
         onConnect: @escaping (ReplicaLink, WireReply) -> Void) {
        self.group = group
        self.onConnect = onConnect
        self.logger = logger
        view = ClusterView(config: config, pool: ReplicaPool(config: config, group: group, onConnect: onConnect),
                           generation: 1)
    }

    var current: ClusterView {
        lock.lock()
        defer { lock.unlock() }
        return view
    }

    var reloadError: String? {
        lock.lock()
        defer { lock.unlock() }
        return lastReloadError
    }

    /// Re-reads the configuration file. A file that fails validation changes nothing; settings that need a
    /// restart (the master's listen addresses, id, decision log, worker threads) keep their old values.
    func reload() -> ReloadReport {
        lock.lock()
        defer { lock.unlock() }
        let old = view
        let next: ClusterConfig
        do {
            next = try ClusterConfig.load(path: old.config.path)
        } catch {
            lastReloadError = "\(error)"
            logger.error("reload rejected, configuration \(old.generation) stays in force: \(error)")
            return ReloadReport(ok: false, message: "reload rejected, the old configuration stays in force: \(error)")
        }
        var applied = next
        var ignored: [String] = []
        if next.master != old.config.master {
            applied.master = old.config.master
            ignored.append("master settings need a restart (systemctl restart kv-master)")
        }
        let pool = ReplicaPool(config: applied, group: group, reusing: old.pool, onConnect: onConnect)
        view = ClusterView(config: applied, pool: pool, generation: old.generation + 1)
        lastReloadError = nil
        let dropped = old.pool.linksDropped(by: pool)
        if !dropped.isEmpty {
            // Transactions that started under the old view may still use these links; close them afterwards.
            let graceMs = old.config.timeouts.prepareTimeoutMs + old.config.timeouts.commitTimeoutMs
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(graceMs)) {
                for link in dropped { link.close() }
            }
        }
        for link in pool.links where !link.health.connected { link.send(.stat) { _ in } }
        let names = applied.replicas.map { "\($0.id)@\($0.address)" }.joined(separator: ", ")
        var message = "configuration \(view.generation) in force: replicas \(names)"
        if !ignored.isEmpty { message += "; " + ignored.joined(separator: "; ") }
        logger.notice("reloaded \(applied.path): \(message)")
        return ReloadReport(ok: true, message: message)
    }
}
