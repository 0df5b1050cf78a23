import Foundation
import KVCommon
import KVRuntime
import Logging

/// A running replica's configuration and its systemd status line. `reload()` (SIGHUP, `systemctl reload
/// kv-replica@ID`) re-reads cluster.yaml, validates the whole file and hands what can change live to the node,
/// the server and the in-doubt resolver (`ReplicaReload` decides what that is); on any error the old
/// configuration stays in force. The STATUS line follows the in-doubt count and the last reload.
final class ReplicaReloader: @unchecked Sendable {
    private let id: String
    private let node: ReplicaNode
    private let server: ReplicaServer
    private let resolver: InDoubtResolver
    private let logger: Logger
    private let listen: String
    private let lock = NSLock()
    private var running: ClusterConfig
    private var reloads = 0
    private var lastReload: String?
    private var inDoubt = (count: 0, blocked: 0)
    private var sentStatus = ""

    init(config: ClusterConfig, id: String, listen: String, node: ReplicaNode, server: ReplicaServer,
         resolver: InDoubtResolver, logger: Logger) {
        running = config
        self.id = id
        self.listen = listen
        self.node = node
        self.server = server
        self.resolver = resolver
        self.logger = logger
        inDoubt.count = node.inDoubt().count
    }

    /// The configuration in force.
    var config: ClusterConfig {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    /// Re-reads cluster.yaml; answers whether it was taken, and the line that was logged.
    @discardableResult
    func reload() -> (ok: Bool, message: String) {
        lock.lock()
        defer { lock.unlock() }
        SystemdNotify.send("RELOADING=1")
        let result: (ok: Bool, message: String)
        do {
            let loaded = try ClusterConfig.load(path: running.path)
            let plan = try ReplicaReload.plan(running: running, loaded: loaded, id: id)
            let config = plan.config
            if config.limits.replicaConnectionsMax > running.limits.replicaConnectionsMax,
               let warning = FileLimit.raise(toFit: config.limits.replicaConnectionsMax + 256,
                                             what: "limits.replica_connections_max (\(config.limits.replicaConnectionsMax))") {
                logger.warning("\(warning)")
            }
            // The server's line limit first: `stat` (which the master's reload checks) reports the node's.
            server.apply(limits: config.limits, timeouts: config.timeouts)
            node.apply(lockWaitMs: config.timeouts.lockWaitTimeoutMs,
                       snapshotLogBytesMax: config.storage.snapshotLogBytesMax, limits: config.limits)
            resolver.apply(config)
            running = config
            reloads += 1
            result = (true, "reload \(reloads) accepted: \(plan.summary)")
            lastReload = plan.needsRestart.isEmpty ? "reload \(reloads) accepted"
                : "reload \(reloads) accepted; needs a restart for " + plan.needsRestart.joined(separator: "; ")
            logger.notice("\(result.message)")
        } catch {
            result = (false, "reload rejected, the old configuration stays in force: \(error)")
            lastReload = "reload rejected (old configuration in force): \(error)"
            logger.error("\(result.message)")
        }
        sendStatus(prefix: "READY=1\n", force: true)
        return result
    }

    /// The resolver's count after each pass; the STATUS line changes only when something in it does.
    func inDoubtChanged(count: Int, blocked: Int) {
        lock.lock()
        defer { lock.unlock() }
        inDoubt = (count, blocked)
        sendStatus(prefix: "", force: false)
    }

    /// Must be called with `lock` held.
    private func sendStatus(prefix: String, force: Bool) {
        var status = "serving on \(listen); \(inDoubt.count) transaction(s) in doubt"
        if inDoubt.blocked > 0 { status += ", \(inDoubt.blocked) blocked (nobody reachable knows the outcome)" }
        if let lastReload { status += "; \(lastReload)" }
        guard force || status != sentStatus else { return }
        sentStatus = status
        SystemdNotify.send(prefix + "STATUS=" + status)
    }
}
