import ArgumentParser
import Dispatch
import Foundation
import KVCommon
import KVRuntime
import Logging

/// `kv-replicad --config cluster.yaml --id r1`: serves one replica of the cluster.
@main
struct ReplicaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-replicad",
        abstract: "Serve one kv replica: durable log, two-phase-commit participant, wire protocol over TCP.")

    @Option(help: "Path to cluster.yaml.")
    var config: String = "cluster.yaml"

    @Option(help: "This replica's id in cluster.yaml.")
    var id: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Event-loop threads for connections.")
    var threads: Int = 1

    @Option(help: ArgumentHelp("Read the cluster key from this file instead of the one cluster.yaml names (the systemd unit "
        + "hands the key over this way); cluster.yaml still decides whether links are authenticated.", valueName: "path"))
    var clusterKeyFile: String?

    @Option(help: ArgumentHelp("Read the link TLS private key from this file instead of security.tls.key_file (the systemd "
        + "unit hands the key over this way).", valueName: "path"))
    var tlsKeyFile: String?

    func run() throws {
        LogSetup.bootstrap(levelName: logLevel)
        var logger = Logger(label: "kv-replicad")
        logger[metadataKey: "replica"] = "\(id)"
        let cluster: ClusterConfig
        do {
            cluster = try ClusterConfig.load(path: config)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(78)
        }
        guard let me = cluster.replica(id: id) else {
            let known = cluster.replicas.map(\.id).joined(separator: ", ")
            logger.critical("config: \(config): no replica with id '\(id)' (known: \(known))")
            throw ExitCode(78)
        }
        let listen = cluster.listenAddress(of: me)
        let clusterKey: ClusterKey?
        let tls: LinkTLS?
        do {
            clusterKey = try cluster.clusterKey(handedOver: clusterKeyFile)
            tls = try LinkTLS.load(cluster, keyFile: tlsKeyFile)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(78)
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
            throw ExitCode(1)
        }
        let resolver = InDoubtResolver(node: node, cluster: cluster, me: me, group: server.group,
                                       clusterKey: clusterKey, tls: tls, logger: logger)
        resolver.start()
        let inDoubt = node.inDoubt().count
        SystemdNotify.send("READY=1\nSTATUS=serving on \(listen); \(inDoubt) transaction(s) in doubt")
        logger.info("replica \(me.id) ready on \(listen)\(tls == nil ? "" : " (mutual TLS)") (dialled as \(me.address)), data in \(me.dataDir)")
        let signals = SignalTrap(signals: [SIGTERM, SIGINT]) { signal in
            logger.info("signal \(signal): stopping")
            SystemdNotify.send("STOPPING=1")
            server.shutdown()
        }
        try server.waitUntilClosed()
        node.close()
        server.shutdownGroup()
        withExtendedLifetime(signals) {}
        logger.info("replica \(me.id) stopped")
    }
}
