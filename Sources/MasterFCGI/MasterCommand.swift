import ArgumentParser
import Foundation
import KVCommon
import KVRuntime
import Logging
import NIOPosix

/// `kv-master --config cluster.yaml`: the FastCGI master that nginx forwards to.
@main
struct MasterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-master",
        abstract: "Serve the kv HTTP API over FastCGI and coordinate two-phase commit across the replicas.")

    @Option(help: "Path to cluster.yaml.")
    var config: String = "cluster.yaml"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Event-loop threads for replica connections.")
    var ioThreads: Int = 1

    func run() throws {
        LogSetup.bootstrap(levelName: logLevel)
        let logger = Logger(label: "kv-master")
        let cluster: ClusterConfig
        do {
            cluster = try ClusterConfig.load(path: config)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(78)
        }
        do {
            try serve(cluster, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
    }

    private func serve(_ cluster: ClusterConfig, logger: Logger) throws {
        try FileIO.makeDirectory(cluster.master.decisionLogDir)
        let seqs = try SeqAllocator(directory: cluster.master.decisionLogDir)
        let decisions = try DecisionLog(directory: cluster.master.decisionLogDir,
                                        compactBytes: cluster.storage.snapshotLogBytesMax, logger: logger)
        let registry = InFlightRegistry(limit: cluster.limits.inFlightTransactionsMax, decisions: decisions)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, ioThreads))
        var resolve: ((ReplicaLink, WireReply) -> Void)?
        let gate = WriteGate()
        let views = try ClusterViews(config: cluster, group: group, gate: gate, logger: logger) { link, stat in
            resolve?(link, stat)
        }
        let delivery = CommitDelivery(currentPool: { views.current.pool }, decisions: decisions, registry: registry,
                                      logger: logger)
        var evaluateSync: (() -> Void)?
        resolve = { link, stat in
            delivery.resolveInDoubt(link: link, stat: stat)
            evaluateSync?()
        }
        delivery.start()
        let dirty = DirtyKeys()
        let sync = SyncManager(views: views, gate: gate, dirty: dirty, logger: logger)
        sync.onJoined = { delivery.replicaSynced($0) }
        let runner = TransactionRunner(decisions: decisions, registry: registry, delivery: delivery, seqs: seqs,
                                       gate: gate, dirty: dirty)
        let service = KVService(views: views, runner: runner, delivery: delivery, registry: registry, seqs: seqs,
                                sync: sync)
        let server = try FastCGIServer(listen: cluster.master.listen, bodyBytesMax: cluster.limits.httpBodyBytesMax,
                                       logger: logger)
        var queries: QueryServer?
        if let host = cluster.master.queryHost, let port = cluster.master.queryPort {
            queries = try QueryServer(group: group, host: host, port: port, registry: registry,
                                      serverID: cluster.master.id, logger: logger)
        }
        // Connect to every replica now, so in-doubt transactions are resolved before the first request.
        for link in views.current.pool.links { link.send(.stat) { _ in } }
        evaluateSync = { DispatchQueue.global().async { sync.evaluate() } }
        sync.start()
        server.start(workers: cluster.master.workerThreads) { KVRouter(service: service).handle($0) }
        SystemdNotify.send("READY=1\nSTATUS=serving on \(server.listenDescription), \(cluster.replicas.count) replicas")
        logger.info("master \(cluster.master.id) ready on \(server.listenDescription): epoch \(seqs.epoch), \(cluster.replicas.count) replicas, \(cluster.master.workerThreads) workers")
        let stopped = DispatchSemaphore(value: 0)
        let signals = SignalTrap(signals: [SIGTERM, SIGINT, SIGHUP]) { signal in
            if signal == SIGHUP {
                SystemdNotify.send("RELOADING=1")
                let report = views.reload()
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
        decisions.close()
        logger.info("master \(cluster.master.id) stopped")
    }
}
