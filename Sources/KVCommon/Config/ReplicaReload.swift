/// What a running replica does with an edited cluster.yaml (SIGHUP, `systemctl reload kv-replica@ID`): which
/// changes it takes live, which need a restart, and when it must refuse the file and keep the old one.
///
/// Live: the master's query address and id (where in-doubt transactions are asked), the peers' addresses,
/// `timeouts`, `limits` and `storage`. At start only: this replica's own binding (`host`, `port`, `listen`),
/// its `data_dir`, and the key and certificate files of `security` (read once, by every process). A file that
/// no longer names this replica is refused: applying it would leave a running replica with no configuration of
/// its own, and the operator meant to stop it (or made a mistake).
public struct ReplicaReload: Equatable, Sendable {
    /// The configuration to run with from now on: the new file, with the start-only settings kept as they were.
    public var config: ClusterConfig
    /// What changed and took effect, one phrase each ("peer r2 moved to 10.0.0.2:7002").
    public var applied: [String]
    /// What changed and waits for a restart of this replica (or of every process, for security files).
    public var needsRestart: [String]

    /// Compares `loaded` with the `running` configuration of replica `id`; throws `KVError.config` for a file
    /// this replica must not take.
    public static func plan(running: ClusterConfig, loaded: ClusterConfig, id: String) throws -> ReplicaReload {
        guard let mine = loaded.replica(id: id), let old = running.replica(id: id) else {
            let known = loaded.replicas.map(\.id).joined(separator: ", ")
            throw KVError.config(file: loaded.path, line: 1, column: 1, message: "replicas: no replica with id '\(id)' "
                + "(known: \(known)); this replica keeps its old configuration. To remove it, stop it "
                + "(systemctl disable --now kv-replica@\(id)) after the master's reload; to keep it, put its entry back")
        }
        var config = loaded
        var applied: [String] = []
        var restart: [String] = []
        if mine.dataDir != old.dataDir {
            restart.append("replicas[\(id)].data_dir \(old.dataDir) → \(mine.dataDir) (a restart opens the new directory; "
                + "move the data first, or the replica starts empty and is synced)")
        }
        if loaded.listenAddress(of: mine) != running.listenAddress(of: old) {
            restart.append("the address replica \(id) binds, \(running.listenAddress(of: old)) → \(loaded.listenAddress(of: mine))")
        }
        if mine.address != old.address, loaded.listenAddress(of: mine) == running.listenAddress(of: old) {
            applied.append("replica \(id) is dialled at \(mine.address)")
        }
        if loaded.security.startOnlyFiles != running.security.startOnlyFiles {
            restart.append("security.cluster_key_file and security.tls (read at start by every process)")
            config.security = running.security
        }
        // This replica keeps serving where and from what it started with until it restarts.
        if let index = config.replicas.firstIndex(where: { $0.id == id }) { config.replicas[index].dataDir = old.dataDir }
        config.replicaListen[id] = running.replicaListen[id]

        if loaded.master.queryAddress != running.master.queryAddress {
            applied.append("in-doubt transactions are asked at \(loaded.master.queryAddress ?? "no master query port") "
                + "(was \(running.master.queryAddress ?? "none"))")
        }
        if loaded.master.id != running.master.id {
            applied.append("the master's id is \(loaded.master.id) (was \(running.master.id))")
        }
        applied += peerChanges(running, loaded, me: id)
        applied += Self.changed("timeouts", running.timeouts, loaded.timeouts)
        applied += Self.changed("limits", running.limits, loaded.limits)
        applied += Self.changed("storage", running.storage, loaded.storage)
        return ReplicaReload(config: config, applied: applied, needsRestart: restart)
    }

    /// One line for the log and systemd's STATUS.
    public var summary: String {
        var parts = [applied.isEmpty ? "nothing this replica uses changed" : "applied: " + applied.joined(separator: "; ")]
        if !needsRestart.isEmpty { parts.append("needs a restart: " + needsRestart.joined(separator: "; ")) }
        return parts.joined(separator: "; ")
    }

    private static func peerChanges(_ running: ClusterConfig, _ loaded: ClusterConfig, me: String) -> [String] {
        var notes: [String] = []
        let before = Dictionary(running.replicas.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let after = Dictionary(loaded.replicas.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for peer in loaded.replicas where peer.id != me {
            if let was = before[peer.id] {
                if was.address != peer.address { notes.append("peer \(peer.id) moved to \(peer.address) (was \(was.address))") }
            } else {
                notes.append("peer \(peer.id) added at \(peer.address)")
            }
        }
        for peer in running.replicas where peer.id != me && after[peer.id] == nil {
            notes.append("peer \(peer.id) removed (still asked, at \(peer.address), about transactions it took part in)")
        }
        return notes
    }

    /// "section.field old → new" for each stored property that differs (found by reflection, so a new setting
    /// cannot be forgotten here).
    private static func changed<T>(_ section: String, _ old: T, _ new: T) -> [String] {
        let before = Mirror(reflecting: old).children
        let after = Array(Mirror(reflecting: new).children)
        var notes: [String] = []
        for (index, child) in before.enumerated() where index < after.count {
            let was = "\(child.value)", now = "\(after[index].value)"
            if was != now, let label = child.label { notes.append("\(section).\(snakeCase(label)) \(was) → \(now)") }
        }
        return notes
    }

    private static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase { out += "_" + character.lowercased() } else { out.append(character) }
        }
        return out
    }
}
