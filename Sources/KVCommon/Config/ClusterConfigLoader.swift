/// Turns a `YAMLNode` into a validated `ClusterConfig`, reporting the first mistake with its position.
struct ClusterConfigLoader {
    let fileName: String
    let baseDirectory: String

    private func error(_ mark: YAMLMark, _ message: String) -> KVError {
        .config(file: fileName, line: mark.line, column: mark.column, message: message)
    }

    mutating func load(_ root: YAMLNode, path: String) throws -> ClusterConfig {
        let top = try Fields(root, path: "cluster.yaml", loader: self, known: ["master", "replicas", "timeouts", "limits", "storage",
                                                                                    "security", "watch", "leases",
                                                                                    "availability"])
        let master = try loadMaster(try top.require("master"))
        guard case .sequence(let items, let listMark) = try top.require("replicas") else {
            throw error(top.node("replicas")!.mark, "replicas must be a list of replicas")
        }
        guard !items.isEmpty else { throw error(listMark, "replicas must list at least one replica") }
        var replicas: [ClusterConfig.Replica] = []
        var listens: [String: ClusterConfig.Endpoint] = [:]
        for (index, item) in items.enumerated() {
            let (replica, listen) = try loadReplica(item, index: index)
            listens[replica.id] = listen
            if let other = replicas.firstIndex(where: { $0.id == replica.id }) {
                throw error(item.mark, "replicas[\(index)].id '\(replica.id)' is already used by replicas[\(other)]")
            }
            if let other = replicas.firstIndex(where: { $0.address == replica.address }) {
                throw error(item.mark, "replicas[\(index)] address \(replica.address) is already used by replicas[\(other)]")
            }
            if let other = replicas.firstIndex(where: { $0.dataDir == replica.dataDir }) {
                throw error(item.mark, "replicas[\(index)].data_dir is already used by replicas[\(other)]")
            }
            replicas.append(replica)
        }
        var timeouts = ClusterConfig.Timeouts()
        if let node = top.node("timeouts") {
            let fields = try Fields(node, path: "timeouts", loader: self, known: [
                "connect_timeout_ms", "prepare_timeout_ms", "commit_timeout_ms", "read_timeout_ms",
                "lock_wait_timeout_ms", "handshake_timeout_ms", "peer_idle_timeout_ms",
            ])
            timeouts.connectTimeoutMs = try fields.int("connect_timeout_ms", in: 1...60_000) ?? timeouts.connectTimeoutMs
            timeouts.prepareTimeoutMs = try fields.int("prepare_timeout_ms", in: 1...600_000) ?? timeouts.prepareTimeoutMs
            timeouts.commitTimeoutMs = try fields.int("commit_timeout_ms", in: 1...600_000) ?? timeouts.commitTimeoutMs
            timeouts.readTimeoutMs = try fields.int("read_timeout_ms", in: 1...600_000) ?? timeouts.readTimeoutMs
            timeouts.lockWaitTimeoutMs = try fields.int("lock_wait_timeout_ms", in: 1...600_000)
                ?? timeouts.lockWaitTimeoutMs
            timeouts.handshakeTimeoutMs = try fields.int("handshake_timeout_ms", in: 10...600_000)
                ?? timeouts.handshakeTimeoutMs
            timeouts.peerIdleTimeoutMs = try fields.int("peer_idle_timeout_ms", in: 100...86_400_000)
                ?? timeouts.peerIdleTimeoutMs
        }
        var limits = ClusterConfig.Limits()
        if let node = top.node("limits") {
            let fields = try Fields(node, path: "limits", loader: self, known: [
                "key_bytes_max", "value_bytes_max", "in_flight_transactions_max", "txn_ops_max", "txn_bytes_max",
                "list_limit_max", "replica_connections_max",
            ])
            limits.keyBytesMax = try fields.int("key_bytes_max", in: 1...65_536) ?? limits.keyBytesMax
            limits.valueBytesMax = try fields.int("value_bytes_max", in: 0...(64 << 20)) ?? limits.valueBytesMax
            limits.inFlightTransactionsMax = try fields.int("in_flight_transactions_max", in: 1...1_000_000)
                ?? limits.inFlightTransactionsMax
            limits.txnOpsMax = try fields.int("txn_ops_max", in: 1...10_000) ?? limits.txnOpsMax
            limits.txnBytesMax = try fields.int("txn_bytes_max", in: 1...(64 << 20)) ?? limits.txnBytesMax
            limits.listLimitMax = try fields.int("list_limit_max", in: 1...100_000) ?? limits.listLimitMax
            limits.replicaConnectionsMax = try fields.int("replica_connections_max", in: 1...1_000_000)
                ?? limits.replicaConnectionsMax
        }
        var storage = ClusterConfig.Storage()
        if let node = top.node("storage") {
            let fields = try Fields(node, path: "storage", loader: self, known: ["snapshot_log_bytes_max"])
            storage.snapshotLogBytesMax = try fields.int("snapshot_log_bytes_max", in: 4096...(1 << 40))
                ?? storage.snapshotLogBytesMax
        }
        var watch = ClusterConfig.Watch()
        if let node = top.node("watch") {
            let fields = try Fields(node, path: "watch", loader: self, known: [
                "history_max", "history_bytes_max", "wait_max_ms", "heartbeat_ms", "watchers_max",
            ])
            watch.historyMax = try fields.int("history_max", in: 1...10_000_000) ?? watch.historyMax
            watch.historyBytesMax = try fields.int("history_bytes_max", in: 4096...(1 << 34)) ?? watch.historyBytesMax
            watch.waitMaxMs = try fields.int("wait_max_ms", in: 1...86_400_000) ?? watch.waitMaxMs
            watch.heartbeatMs = try fields.int("heartbeat_ms", in: 100...3_600_000) ?? watch.heartbeatMs
            watch.watchersMax = try fields.int("watchers_max", in: 0...1_000_000) ?? watch.watchersMax
        }
        var leases = ClusterConfig.Leases()
        if let node = top.node("leases") {
            let fields = try Fields(node, path: "leases", loader: self, known: ["leases_max", "ttl_max_s"])
            leases.leasesMax = try fields.int("leases_max", in: 0...10_000_000) ?? leases.leasesMax
            leases.ttlMaxS = try fields.int("ttl_max_s", in: 1...31_536_000) ?? leases.ttlMaxS
        }
        var availability = ClusterConfig.Availability()
        if let node = top.node("availability") {
            let fields = try Fields(node, path: "availability", loader: self,
                                    known: ["eject_after_ms", "min_in_sync_replicas", "auto_repair",
                                            "verify_interval_s"])
            availability.ejectAfterMs = try fields.int("eject_after_ms", in: 0...3_600_000) ?? 0
            availability.minInSyncReplicas = try fields.int("min_in_sync_replicas", in: 1...replicas.count)
            availability.autoRepair = try fields.bool("auto_repair") ?? false
            availability.verifyIntervalS = try fields.int("verify_interval_s", in: 1...86_400) ?? 300
        }
        var security = ClusterConfig.Security()
        if let node = top.node("security") {
            let fields = try Fields(node, path: "security", loader: self, known: ["cluster_key_file", "tokens_file", "tls"])
            if fields.node("tokens_file") != nil { security.tokensFile = resolve(try fields.string("tokens_file")) }
            if let keyNode = fields.node("cluster_key_file") {
                security.clusterKeyFile = resolve(try fields.string("cluster_key_file"))
                security.clusterKeyMark = keyNode.mark
            }
            if let tlsNode = fields.node("tls") {
                let tls = try Fields(tlsNode, path: "security.tls", loader: self, known: ["cert_file", "key_file", "ca_file"])
                security.linkTLS = ClusterConfig.LinkTLSFiles(
                    certFile: resolve(try tls.string("cert_file")), keyFile: resolve(try tls.string("key_file")),
                    caFile: resolve(try tls.string("ca_file")), mark: tlsNode.mark)
                // The roles (master, replica, operator) come from the cluster-key handshake, which runs inside TLS.
                guard security.clusterKeyFile != nil else {
                    throw error(tlsNode.mark, "security.tls needs security.cluster_key_file too: TLS says a peer holds a "
                        + "certificate of the cluster's CA, the cluster key says which role it has")
                }
            }
        }
        return ClusterConfig(path: path, master: master, replicas: replicas, timeouts: timeouts, limits: limits,
                             storage: storage, security: security, watch: watch, leases: leases,
                             availability: availability, replicaListen: listens)
    }

    private func loadMaster(_ node: YAMLNode) throws -> ClusterConfig.Master {
        let fields = try Fields(node, path: "master", loader: self,
                                known: ["id", "listen", "decision_log_dir", "worker_threads", "query_listen"])
        let id = try fields.identifier("id")
        let listenText = try fields.string("listen")
        let listen: ClusterConfig.ListenAddress
        if listenText.contains("/") {
            listen = .unix(path: resolve(listenText))
        } else {
            guard let colon = listenText.lastIndex(of: ":"), let port = Int(listenText[listenText.index(after: colon)...]),
                  (1...65_535).contains(port), colon != listenText.startIndex
            else {
                throw error(fields.node("listen")!.mark,
                            "master.listen must be a socket path (with a '/') or host:port with port 1-65535")
            }
            listen = .tcp(host: String(listenText[..<colon]), port: port)
        }
        var queryHost: String?
        var queryPort: Int?
        if fields.node("query_listen") != nil {
            let text = try fields.string("query_listen")
            guard let colon = text.lastIndex(of: ":"), colon != text.startIndex,
                  let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port)
            else { throw error(fields.node("query_listen")!.mark, "master.query_listen must be host:port with port 1-65535") }
            queryHost = String(text[..<colon])
            queryPort = port
        }
        return ClusterConfig.Master(
            id: id, listen: listen, decisionLogDir: resolve(try fields.string("decision_log_dir")),
            workerThreads: try fields.int("worker_threads", in: 1...4096) ?? 128, queryHost: queryHost,
            queryPort: queryPort)
    }

    /// A replica, and its `listen` address when it has one.
    private func loadReplica(_ node: YAMLNode, index: Int) throws -> (ClusterConfig.Replica, ClusterConfig.Endpoint?) {
        let fields = try Fields(node, path: "replicas[\(index)]", loader: self,
                                known: ["id", "host", "port", "data_dir", "listen"])
        guard let port = try fields.int("port", in: 1...65_535) else {
            throw error(node.mark, "replicas[\(index)]: missing field 'port'")
        }
        let replica = ClusterConfig.Replica(id: try fields.identifier("id"), host: try fields.string("host"), port: port,
                                            dataDir: resolve(try fields.string("data_dir")))
        guard let listenNode = fields.node("listen") else {
            // Binding loopback where others dial another address would leave the replica unreachable, silently.
            guard ClusterConfig.isLoopback(replica.host) else {
                throw error(node.mark, "replicas[\(index)].host \(replica.host) is not loopback: set replicas[\(index)].listen "
                    + "to the address to bind (such as \(replica.host):\(port), or 0.0.0.0:\(port) for every interface); "
                    + "a replica binds loopback unless cluster.yaml says otherwise")
            }
            return (replica, nil)
        }
        let text = try fields.string("listen")
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex,
              let listenPort = Int(text[text.index(after: colon)...]), (1...65_535).contains(listenPort) else {
            throw error(listenNode.mark, "replicas[\(index)].listen must be host:port with port 1-65535")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (replica, ClusterConfig.Endpoint(host: host, port: listenPort))
    }

    private func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : baseDirectory + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
    }

    /// The fields of one mapping, checked against the names it may have.
    struct Fields {
        let entries: [YAMLNode.MappingEntry]
        let mark: YAMLMark
        let path: String
        let loader: ClusterConfigLoader

        init(_ node: YAMLNode, path: String, loader: ClusterConfigLoader, known: [String]) throws {
            guard case .mapping(let entries, let mark) = node else {
                throw loader.error(node.mark, "\(path) must be a mapping, found \(node.kindName)")
            }
            var seen: Set<String> = []
            for entry in entries {
                guard known.contains(entry.key) else {
                    throw loader.error(entry.keyMark,
                                       "\(path): unknown field '\(entry.key)' (known: \(known.joined(separator: ", ")))")
                }
                guard seen.insert(entry.key).inserted else {
                    throw loader.error(entry.keyMark, "\(path): field '\(entry.key)' appears twice")
                }
            }
            self.entries = entries
            self.mark = mark
            self.path = path
            self.loader = loader
        }

        func node(_ name: String) -> YAMLNode? { entries.first { $0.key == name }?.value }

        func require(_ name: String) throws -> YAMLNode {
            guard let node = node(name) else { throw loader.error(mark, "\(path): missing field '\(name)'") }
            return node
        }

        func string(_ name: String) throws -> String {
            guard case .scalar(let text, let mark) = try require(name) else {
                throw loader.error(try require(name).mark, "\(path).\(name) must be a scalar")
            }
            guard !text.isEmpty else { throw loader.error(mark, "\(path).\(name) must not be empty") }
            return text
        }

        func identifier(_ name: String) throws -> String {
            let text = try string(name)
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
            guard text.count <= 64, text.allSatisfy(allowed.contains) else {
                throw loader.error(node(name)!.mark, "\(path).\(name) must be 1-64 letters, digits, '-', '_' or '.'")
            }
            return text
        }

        func bool(_ name: String) throws -> Bool? {
            guard let node = node(name) else { return nil }
            guard case .scalar(let text, _) = node, ["true", "false"].contains(text) else {
                throw loader.error(node.mark, "\(path).\(name) must be true or false")
            }
            return text == "true"
        }

        func int(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let node = node(name) else { return nil }
            guard case .scalar(let text, _) = node, let value = Int(text), range.contains(value) else {
                throw loader.error(node.mark, "\(path).\(name) must be \(range.lowerBound)-\(range.upperBound)")
            }
            return value
        }
    }
}
