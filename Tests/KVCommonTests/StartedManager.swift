@testable import KVCommon

/// The managers most tests of the master's rules start from: `replicas` all persisted in sync, the manager
/// started, and every replica connected and answering its first `stat` (empty, in sync).
enum StartedManager {
    static func replicas(_ ids: [String]) -> [ClusterConfig.Replica] {
        ids.map { ClusterConfig.Replica(id: $0, host: "h-\($0)", port: 7000, dataDir: "/d/\($0)") }
    }

    /// A `stat` answer of an empty replica, in sync.
    static func stat(_ replica: ClusterConfig.Replica) -> WireReply {
        WireReply(status: true, code: .ok, message: "ok", seq: 0, server: replica.id,
                  stat: ReplicaStat(keys: 0, digest: 0, lastCommittedSeq: 0, inDoubt: []))
    }

    static func make(_ replicas: [ClusterConfig.Replica],
                     availability: ClusterConfig.Availability = ClusterConfig.Availability()) -> TransactionManager {
        var settings = TransactionManager.Settings(masterID: "m1", replicas: replicas, timeouts: ClusterConfig.Timeouts(),
                                                   inFlightMax: 16, compactBytes: 1 << 20)
        settings.availability = availability
        let members = replicas.map { MasterState.Member(replica: $0, joinedAt: 0) }
        var manager = TransactionManager(settings: settings, recovered: MasterState(seqEpoch: 1, members: members),
                                         decisions: [])
        _ = manager.handle(.start)
        for replica in replicas {
            _ = manager.handle(.connected(replica))
            _ = manager.handle(.replied(replica, .connect, stat(replica)))
        }
        return manager
    }
}
