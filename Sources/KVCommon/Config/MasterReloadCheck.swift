/// What the master checks against the running replicas before it takes an edited cluster.yaml, so that a
/// reload cannot leave the cluster half-configured: each replica the file names is asked `stat` first, and
/// the file is refused (nothing changes) when
/// - a replica new to the file does not answer: it must be started before the reload that adds it;
/// - a replica answers from another data directory than the file gives it: the file and the running process
///   disagree about which copy of the data this is (restart the replica so it opens the new directory, or fix
///   the file);
/// - the new limits need longer request lines than a replica takes now: the replicas are reloaded first, then
///   the master, or the first larger value would fail on them.
/// A replica already configured that does not answer is not checked: removing or fixing a dead one must stay
/// possible, and it reads the file again when it starts.
public enum MasterReloadCheck {
    /// What asking one replica gave: its stat, or why it could not be asked.
    public enum Report: Equatable, Sendable {
        case answered(ReplicaStat)
        case unreachable(String)
    }

    /// Why `loaded` must not take over from `running`, or nil.
    public static func refusal(running: ClusterConfig, loaded: ClusterConfig, reports: [String: Report]) -> String? {
        var problems: [String] = []
        let lineBytes = loaded.limits.wireRequestBytesMax
        let raisesLines = lineBytes > running.limits.wireRequestBytesMax
        for replica in loaded.replicas {
            let isNew = running.replica(id: replica.id) == nil
            switch reports[replica.id] {
            case .unreachable(let reason)?:
                if isNew {
                    problems.append("new replica \(replica.id) at \(replica.address) does not answer (\(reason)): start it "
                        + "first (systemctl enable --now kv-replica@\(replica.id), or scripts/cluster.sh start-replica "
                        + "\(replica.id)), then reload")
                }
            case .answered(let stat)?:
                if !stat.dataDir.isEmpty && stat.dataDir != replica.dataDir {
                    problems.append("replica \(replica.id) at \(replica.address) serves data_dir \(stat.dataDir), but the "
                        + "file gives it \(replica.dataDir): restart it so it opens the new directory (systemctl restart "
                        + "kv-replica@\(replica.id)), or put the old path back")
                }
                if raisesLines && stat.requestBytesMax > 0 && stat.requestBytesMax < lineBytes {
                    problems.append("replica \(replica.id) takes request lines of up to \(stat.requestBytesMax) bytes and "
                        + "the new limits need \(lineBytes): reload the replicas first (systemctl reload "
                        + "kv-replica@\(replica.id), or kill -HUP), then the master")
                }
            case nil:
                if isNew { problems.append("new replica \(replica.id) at \(replica.address) was not asked") }
            }
        }
        guard !problems.isEmpty else { return nil }
        return "reload rejected, the old configuration stays in force: " + problems.joined(separator: "; ")
    }
}
