import Foundation

/// cluster.yaml as a Swift value: the master, the replicas, time-outs and limits. Built only by
/// `ClusterConfig.load`/`parse`, which validate everything, so a value of this type is always usable.
public struct ClusterConfig: Equatable, Sendable {
    /// Where the master's FastCGI socket listens when systemd does not hand it one.
    public enum ListenAddress: Equatable, Sendable, CustomStringConvertible {
        case unix(path: String)
        case tcp(host: String, port: Int)

        public var description: String {
            switch self {
            case .unix(let path): return path
            case .tcp(let host, let port): return "\(host):\(port)"
            }
        }
    }

    public struct Master: Equatable, Sendable {
        public var id: String
        public var listen: ListenAddress
        /// Directory of the decision log and the epoch file.
        public var decisionLogDir: String
        /// FastCGI worker threads; must cover nginx's upstream connections (see docs/OPERATIONS.md).
        public var workerThreads: Int
        /// TCP address where in-doubt replicas ask for outcomes (`seq;qry;;`); nil: replicas rely on the
        /// master contacting them and on their peers.
        public var queryHost: String?
        public var queryPort: Int?
        public var queryAddress: String? { queryHost.flatMap { host in queryPort.map { "\(host):\($0)" } } }
    }

    public struct Replica: Hashable, Sendable {
        public var id: String
        public var host: String
        public var port: Int
        public var dataDir: String
        public var address: String { "\(host):\(port)" }

        public init(id: String, host: String, port: Int, dataDir: String) {
            self.id = id
            self.host = host
            self.port = port
            self.dataDir = dataDir
        }

        /// The id and port only: replicas key the master's links, looked up for every message, and equal
        /// replicas still compare in full.
        public func hash(into hasher: inout Hasher) {
            hasher.combine(id)
            hasher.combine(port)
        }
    }

    public struct Timeouts: Equatable, Sendable {
        public var connectTimeoutMs: Int = 500
        public var prepareTimeoutMs: Int = 2000
        public var commitTimeoutMs: Int = 2000
        public var readTimeoutMs: Int = 2000
        public var lockWaitTimeoutMs: Int = 1000
        /// A connection to a replica port or `query_listen` that has not finished its handshake by then is closed.
        public var handshakeTimeoutMs: Int = 5000
        /// A peer's or operator's connection to a replica that sends nothing for this long is closed (the master's
        /// links are not: they stay open between writes).
        public var peerIdleTimeoutMs: Int = 300_000

        public init() {}
    }

    public struct Limits: Equatable, Sendable {
        public var keyBytesMax: Int = 1024
        public var valueBytesMax: Int = 1 << 20
        public var inFlightTransactionsMax: Int = 4096
        /// Compares plus operations in one `POST /txn`.
        public var txnOpsMax: Int = 128
        /// Bytes of keys and values in one `POST /txn`.
        public var txnBytesMax: Int = 1 << 20
        /// Entries in one page of `GET /kv?prefix=`.
        public var listLimitMax: Int = 1000
        /// Connections one replica holds at once; past it a connection gets one error line and is closed.
        public var replicaConnectionsMax: Int = 1024

        public init() {}

        /// The longest request line a replica accepts: a put with both fields fully percent-escaped, or a `txn`
        /// prepare at `txn_bytes_max` and `txn_ops_max` (keys and values base64 in JSON).
        public var wireRequestBytesMax: Int {
            max(3 * (keyBytesMax + valueBytesMax) + 64, Self.base64Bytes(txnBytesMax) + txnOpsMax * 160 + 64)
        }

        /// The budget of one page on the wire (a `list` page, a state-transfer `page`): entries are added while
        /// they fit, and a page always holds at least one entry, however large.
        public var pageBytesMax: Int { max(1 << 20, wireEntryBytesMax) }

        /// The longest reply line a replica sends: a `get` of the largest value, a full page, a `txn` vote
        /// that reads `txn_ops_max` of the largest entries, or a `stat` listing every transaction in flight.
        public var wireReplyBytesMax: Int {
            max(pageBytesMax, txnOpsMax * wireEntryBytesMax, inFlightTransactionsMax * 96) + 512
        }

        /// The largest HTTP request body the master reads: a put's value, `POST /kv` with a fully escaped key,
        /// or `POST /txn` at its limits with every byte JSON-escaped (six bytes for a control character).
        public var httpBodyBytesMax: Int {
            max(valueBodyBytesMax, 6 * txnBytesMax + txnOpsMax * 192 + 64)
        }

        /// The largest body of a single-value write (a put's value, `POST /kv` with a fully escaped key): what
        /// nginx's `client_max_body_size` must pass.
        public var valueBodyBytesMax: Int { valueBytesMax + 3 * keyBytesMax + 16 }

        /// One entry (key, value, version, created) on the wire at the key and value limits: both base64 in
        /// JSON, as pages and `txn` reads carry them (a `get` reply is never larger).
        public var wireEntryBytesMax: Int { Self.wireEntryBytes(key: keyBytesMax, value: valueBytesMax) }

        public static func wireEntryBytes(key: Int, value: Int) -> Int { base64Bytes(key) + base64Bytes(value) + 96 }

        public static func base64Bytes(_ count: Int) -> Int { (count + 2) / 3 * 4 }
    }

    public struct Storage: Equatable, Sendable {
        /// A replica writes a snapshot and starts a new log segment once its segment grows past this.
        public var snapshotLogBytesMax: Int = 64 << 20
    }

    /// `watch:`: the change history watchers resume from, and what waiting costs (see OPERATIONS.md, Watch).
    public struct Watch: Equatable, Sendable {
        /// Changes kept for watchers that resume (the decision log carries them across restarts).
        public var historyMax: Int = 10_000
        /// Bytes of keys and values those changes may take.
        public var historyBytesMax: Int = 16 << 20
        /// The longest `wait=` a blocking query may ask for (a longer one is cut to it).
        public var waitMaxMs: Int = 300_000
        /// A stream with nothing to send for this long gets a comment line, so proxies and clients see it alive.
        public var heartbeatMs: Int = 15_000
        /// Blocking queries and streams held at once; past it a new one is answered 503.
        public var watchersMax: Int = 10_000

        public init() {}
    }

    /// `availability:`: whether writes go on without a replica that failed (see OPERATIONS.md, Availability).
    public struct Availability: Equatable, Sendable {
        /// A participant unreachable or timing out for this long is ejected: taken out of the in-sync set
        /// durably, resynced when it is reachable again. 0: never (strict: each write answers 503 naming it).
        public var ejectAfterMs: Int = 0
        /// Ejection never leaves fewer in-sync replicas than this; nil: a majority of the configured replicas.
        public var minInSyncReplicas: Int?
        /// Compare the in-sync replicas every `verifyIntervalS` and resync those that differ from the majority.
        public var autoRepair = false
        public var verifyIntervalS = 300

        public init(ejectAfterMs: Int = 0, minInSyncReplicas: Int? = nil) {
            self.ejectAfterMs = ejectAfterMs
            self.minInSyncReplicas = minInSyncReplicas
        }

        /// The floor in force for `replicas` configured replicas.
        public func minInSync(of replicas: Int) -> Int { minInSyncReplicas ?? (replicas / 2 + 1) }
    }

    /// `leases:`: how many leases the master keeps and how long one may live (see OPERATIONS.md, Leases).
    public struct Leases: Equatable, Sendable {
        /// Leases granted and not yet expired or revoked; past it `POST /lease` answers 503.
        public var leasesMax: Int = 100_000
        /// The longest TTL a lease may ask for, in seconds.
        public var ttlMaxS: Int = 604_800

        public init() {}
    }

    /// How the cluster's processes prove themselves to each other (see ARCHITECTURE.md, Link authentication).
    public struct Security: Equatable, Sendable {
        /// The file holding the cluster key (hex, mode 0600); nil: the cluster links are not authenticated.
        public var clusterKeyFile: String?
        /// Where cluster.yaml names it, for errors about the file.
        public var clusterKeyMark = YAMLMark(line: 1, column: 1)
        /// The HTTP API's bearer tokens (`TokenFile`); nil: the API is open to whoever reaches nginx.
        public var tokensFile: String?
        /// Mutual TLS on every cluster link (replica ports, `query_listen`, peer queries); nil: plain TCP.
        public var linkTLS: LinkTLSFiles?

        /// The files every process reads once, at start (the cluster key and the link TLS files): a reload that
        /// changes them needs a restart of every process.
        public var startOnlyFiles: [String?] {
            [clusterKeyFile, linkTLS?.certFile, linkTLS?.keyFile, linkTLS?.caFile]
        }
    }

    /// `security.tls`: this host's certificate and key, and the CA every peer's certificate must chain to. Each
    /// host reads the paths on its own disk, so one cluster.yaml serves hosts with their own certificates.
    public struct LinkTLSFiles: Equatable, Sendable {
        public var certFile: String
        public var keyFile: String
        public var caFile: String
        /// Where cluster.yaml has the section, for errors about the files.
        public var mark: YAMLMark

        public init(certFile: String, keyFile: String, caFile: String, mark: YAMLMark) {
            self.certFile = certFile
            self.keyFile = keyFile
            self.caFile = caFile
            self.mark = mark
        }
    }

    /// The file this configuration came from (absolute).
    public var path: String
    public var master: Master
    public var replicas: [Replica]
    public var timeouts: Timeouts
    public var limits: Limits
    public var storage = Storage()
    public var security = Security()
    public var watch = Watch()
    public var leases = Leases()
    public var availability = Availability()
    /// `replicas[].listen` by replica id: where a replica binds, when not on loopback at its `port`.
    public var replicaListen: [String: Endpoint] = [:]

    /// A host and port to bind.
    public struct Endpoint: Equatable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public func replica(id: String) -> Replica? { replicas.first { $0.id == id } }

    /// Where `replica` binds: its `listen`, or loopback at its port (a replica is reachable from other hosts
    /// only where cluster.yaml says so).
    public func listenAddress(of replica: Replica) -> Endpoint {
        replicaListen[replica.id] ?? Endpoint(host: "127.0.0.1", port: replica.port)
    }

    /// Whether `host` names this machine's loopback interface.
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Reads and validates `path`. Relative paths inside are resolved against the file's directory.
    public static func load(path: String) throws -> ClusterConfig {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        guard let data = FileManager.default.contents(atPath: absolute) else {
            throw KVError.config(file: path, line: 1, column: 1, message: "cannot read the file (does it exist?)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw KVError.config(file: path, line: 1, column: 1, message: "the file is not UTF-8 text")
        }
        let directory = (absolute as NSString).deletingLastPathComponent
        return try parse(text, fileName: path, baseDirectory: directory, absolutePath: absolute)
    }

    /// Parses and validates YAML text; `fileName` labels errors, `baseDirectory` anchors relative paths.
    public static func parse(_ text: String, fileName: String, baseDirectory: String,
                             absolutePath: String? = nil) throws -> ClusterConfig {
        let root = try YAMLParser.parse(text, fileName: fileName)
        var loader = ClusterConfigLoader(fileName: fileName, baseDirectory: baseDirectory)
        return try loader.load(root, path: absolutePath ?? fileName)
    }
}
