import ArgumentParser
import KVMaster

/// `kv-master --config cluster.yaml`: the FastCGI master that nginx forwards to (`MasterProcess` is all of it).
@main
struct MasterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-master",
        abstract: "Serve the kv HTTP API over FastCGI and coordinate two-phase commit across the replicas.")

    @Option(help: "Path to cluster.yaml.")
    var config: String = "cluster.yaml"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("Read the cluster key from this file instead of the one cluster.yaml names (the systemd unit "
        + "hands the key over this way); cluster.yaml still decides whether links are authenticated.", valueName: "path"))
    var clusterKeyFile: String?

    @Option(help: ArgumentHelp("Read the link TLS private key from this file instead of security.tls.key_file (the systemd "
        + "unit hands the key over this way).", valueName: "path"))
    var tlsKeyFile: String?

    func run() throws {
        let code = MasterProcess.run(configPath: config, logLevel: logLevel, clusterKeyFile: clusterKeyFile,
                                     tlsKeyFile: tlsKeyFile)
        if code != 0 { throw ExitCode(code) }
    }
}
