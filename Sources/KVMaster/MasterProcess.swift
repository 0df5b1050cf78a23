import Foundation
import KVCommon
import KVRuntime
import Logging
import NIOPosix

/// The master process from configuration to shutdown: what `kv-master` runs (its command parses the flags and
/// exits with the code this returns). In the library so that every part of the master is reachable from tests.
public enum MasterProcess {
    /// Runs until SIGTERM or SIGINT; answers the process's exit code: 0 after a clean stop, 78 (EX_CONFIG) for a
    /// configuration that restarting will not fix, 1 for any other failure to start.
    public static func run(configPath: String, logLevel: String, clusterKeyFile: String?, tlsKeyFile: String?) -> Int32 {
        LogSetup.bootstrap(levelName: logLevel)
        let logger = Logger(label: "kv-master")
        let cluster: ClusterConfig
        do {
            cluster = try ClusterConfig.load(path: configPath)
        } catch {
            logger.critical("\(error)")
            return 78
        }
        do {
            try serve(cluster, logger: logger, clusterKeyFile: clusterKeyFile, tlsKeyFile: tlsKeyFile)
            return 0
        } catch let error as MasterError {
            logger.critical("cannot start: \(error)")
            // A configuration that does not fit the persisted state is not fixed by restarting (EX_CONFIG).
            if case .configuration = error { return 78 }
            return 1
        } catch let error as KVError {
            logger.critical("cannot start: \(error)")
            if case .config = error { return 78 }
            return 1
        } catch {
            logger.critical("cannot start: \(error)")
            return 1
        }
    }

    private static func serve(_ cluster: ClusterConfig, logger: Logger, clusterKeyFile: String?,
                              tlsKeyFile: String?) throws {
        try FileIO.makeDirectory(cluster.master.decisionLogDir)
        // One event loop runs the master's state machine and every replica connection: its rules need one
        // thread, and on a small machine a second loop would only add hand-offs.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // query_listen's connections, a link per replica and a read connection per worker (and watch thread) and
        // replica, a connection from nginx per parked watcher, the log.
        let descriptors = cluster.limits.replicaConnectionsMax + cluster.replicas.count * (cluster.master.workerThreads + 3)
            + cluster.watch.watchersMax + 256
        if let warning = FileLimit.raise(toFit: descriptors, what: "limits.replica_connections_max, watch.watchers_max "
                                            + "and the workers' read connections") {
            logger.warning("\(warning)")
        }
        let node = try MasterNode(config: cluster, loop: group.next(), logger: logger, clusterKeyFile: clusterKeyFile,
                                  tlsKeyFile: tlsKeyFile)
        try node.start()
        let server = try FastCGIServer(listen: cluster.master.listen, bodyLimit: node.httpBodyLimit,
                                       logger: logger)
        var queries: QueryServer?
        if let host = cluster.master.queryHost, let port = cluster.master.queryPort {
            queries = try QueryServer(group: group, host: host, port: port, node: node, serverID: cluster.master.id,
                                      clusterKey: node.clusterKey, tls: node.linkTLS, limits: cluster.limits, timeouts: cluster.timeouts,
                                      logger: logger)
        }
        let reads = ReplicaReads()
        // A watcher's connection that nginx closed fails the next write with EPIPE instead of killing the process
        // (libfcgi writes with write(2), which raises SIGPIPE).
        signal(SIGPIPE, SIG_IGN)
        let leases = LeaseKeeper(node: node, reads: ReplicaReads(), logger: logger)
        ReplicaRepair.startPeriodic(node: node, logger: logger)
        leases.start()
        server.start(workers: cluster.master.workerThreads) {
            KVRouter(node: node, reads: reads, leases: leases).handle($0)
        }
        SystemdNotify.send("READY=1\nSTATUS=serving on \(server.listenDescription), \(cluster.replicas.count) replicas")
        let ready = "master \(cluster.master.id) ready on \(server.listenDescription): epoch \(node.status().seqEpoch), "
            + "\(cluster.replicas.count) replicas, \(cluster.master.workerThreads) workers"
        logger.info("\(ready)")
        let stopped = DispatchSemaphore(value: 0)
        let signals = SignalTrap(signals: [SIGTERM, SIGINT, SIGHUP]) { signal in
            if signal == SIGHUP {
                SystemdNotify.send("RELOADING=1")
                let report = node.reload()
                SystemdNotify.send("READY=1\nSTATUS=\(report.message)")
                return
            }
            logger.info("signal \(signal): stopping")
            SystemdNotify.send("STOPPING=1")
            stopped.signal()
        }
        stopped.wait()
        withExtendedLifetime(signals) {}
        queries?.close()
        node.close()
        logger.info("master \(cluster.master.id) stopped")
    }
}
