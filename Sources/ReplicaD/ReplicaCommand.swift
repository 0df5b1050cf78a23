import ArgumentParser
import KVReplica

/// `kv-replicad --config cluster.yaml --id r1`: serves one replica of the cluster (`ReplicaProcess` is all of it).
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

    @Flag(help: "Validate cluster.yaml and this replica's entry, print where it binds and its data directory, and exit.")
    var check = false

    func run() throws {
        if check {
            let code = ReplicaProcess.check(configPath: config, id: id)
            if code != 0 { throw ExitCode(code) }
            return
        }
        let code = ReplicaProcess.run(configPath: config, id: id, logLevel: logLevel, threads: threads,
                                      clusterKeyFile: clusterKeyFile, tlsKeyFile: tlsKeyFile)
        if code != 0 { throw ExitCode(code) }
    }
}
