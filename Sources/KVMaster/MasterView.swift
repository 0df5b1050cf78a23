import Foundation
import KVCommon

/// What request handlers read: the configuration in force, who takes part, and the links to the replicas.
/// Immutable; the master node publishes a new one whenever the configuration or the membership changes, and a
/// request takes the current one once and uses it to the end.
final class MasterView: Sendable {
    let config: ClusterConfig
    let membership: MembershipView
    /// Every configured replica's link, in configuration order.
    let links: [ReplicaLink]
    /// The links reads may use: the participants' (computed once: every read walks them).
    let readable: [ReplicaLink]
    let loadedAt: Date

    init(config: ClusterConfig, membership: MembershipView, links: [ReplicaLink], loadedAt: Date) {
        self.config = config
        self.membership = membership
        self.links = links
        let participants = Set(membership.participants.map(\.id))
        readable = links.filter { participants.contains($0.replica.id) }
        self.loadedAt = loadedAt
    }

    func isSyncing(_ replica: String) -> Bool { membership.syncing.contains(replica) }
}
