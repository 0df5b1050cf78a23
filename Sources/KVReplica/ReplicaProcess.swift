import Dispatch
import Foundation
import KVCommon
import KVRuntime
import Logging

/// The replica process from configuration to shutdown: what `kv-replicad` runs (its command parses the flags and
/// exits with the code this returns). In the library so that every part of the replica is reachable from tests.
public enum ReplicaProcess {
    /// `--check`: validates the file and this replica's entry without starting anything, and prints one line,
    /// `replica ID: binds ADDRESS, dialled at ADDRESS, data_dir DIR` (scripts/install.sh reads it). Answers 0, or
    /// 78 after printing the error.
    public static func check(configPath: String, id: String) -> Int32 {
        do {
            let cluster = try ClusterConfig.load(path: configPath)
            guard let me = cluster.replica(id: id) else {
                let known = cluster.replicas.map(\.id).joined(separator: ", ")
                FileHandle.standardError.write(Data("config: \(configPath): no replica with id '\(id)' (known: \(known))\n".utf8))
                return 78
            }
            print("replica \(id): binds \(cluster.listenAddress(of: me)), dialled at \(me.address), data_dir \(me.dataDir)")
            return 0
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            return 78
        }
    }

    /// Runs until SIGTERM or SIGINT (SIGHUP reloads cluster.yaml: `ReplicaReloader`); answers the process's exit code: 0 after a clean stop, 78 (EX_CONFIG) for a
    /// configuration that restarting will not fix, 1 for any other failure to start.
    public static func run(configPath config: String, id: String, logLevel: String, threads: Int,
                           clusterKeyFile: String?, tlsKeyFile: String?) -> Int32 {
        LogSetup.bootstrap(levelName: logLevel)
        var logger = Logger(label: "kv-replicad")
        logger[metadataKey: "replica"] = "\(id)"
        let cluster: ClusterConfig
        do {
            cluster = try ClusterConfig.load(path: config)
        } catch {
            logger.critical("\(error)")
            return 78
        }
        guard let me = cluster.replica(id: id) else {
            let known = cluster.replicas.map(\.id).joined(separator: ", ")
            logger.critical("config: \(config): no replica with id '\(id)' (known: \(known))")
            return 78
        }
        let listen = cluster.listenAddress(of: me)
        let clusterKey: ClusterKey?
        let tls: LinkTLS?
        do {
            clusterKey = try cluster.clusterKey(handedOver: clusterKeyFile)
            tls = try LinkTLS.load(cluster, keyFile: tlsKeyFile)
        } catch {
            logger.critical("\(error)")
            return 78
        }
        if clusterKey == nil {
            logger.warning("""
                security.cluster_key_file is not set: anyone who can reach \(listen) can read, write and wipe \
                this replica (see docs/OPERATIONS.md, Security)
                """)
        }
        // Every connection the limit admits, plus the log, snapshots and event-loop descriptors.
        if let warning = FileLimit.raise(toFit: cluster.limits.replicaConnectionsMax + 256,
                                         what: "limits.replica_connections_max (\(cluster.limits.replicaConnectionsMax))") {
            logger.warning("\(warning)")
        }
        let node: ReplicaNode
        let server: ReplicaServer
        do {
            node = try ReplicaNode(server: me.id, dataDir: me.dataDir, lockWaitMs: cluster.timeouts.lockWaitTimeoutMs,
                                   snapshotLogBytesMax: cluster.storage.snapshotLogBytesMax,
                                   limits: cluster.limits, logger: logger)
            server = try ReplicaServer(node: node, host: listen.host, port: listen.port, limits: cluster.limits,
                                       timeouts: cluster.timeouts, threads: max(1, threads), clusterKey: clusterKey,
                                       tls: tls,
                                       serverID: me.id, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            return 1
        }
        let resolver = InDoubtResolver(node: node, cluster: cluster, me: me, group: server.group,
                                       clusterKey: clusterKey, tls: tls, logger: logger)
        let reloader = ReplicaReloader(config: cluster, id: me.id, listen: "\(listen)", node: node, server: server,
                                       resolver: resolver, logger: logger)
        resolver.onPass = { reloader.inDoubtChanged(count: $0, blocked: $1) }
        resolver.start()
        SystemdNotify.send("READY=1\nSTATUS=serving on \(listen); \(node.inDoubt().count) transaction(s) in doubt")
        logger.info("replica \(me.id) ready on \(listen)\(tls == nil ? "" : " (mutual TLS)") (dialled as \(me.address)), data in \(me.dataDir)")
        let signals = SignalTrap(signals: [SIGTERM, SIGINT, SIGHUP]) { signal in
            if signal == SIGHUP {
                reloader.reload()
                return
            }
            logger.info("signal \(signal): stopping")
            SystemdNotify.send("STOPPING=1")
            server.shutdown()
        }
        do {
            try server.waitUntilClosed()
        } catch {
            logger.critical("\(error)")
            return 1
        }
        node.close()
        server.shutdownGroup()
        withExtendedLifetime(signals) {}
        logger.info("replica \(me.id) stopped")
        return 0
    }
}
