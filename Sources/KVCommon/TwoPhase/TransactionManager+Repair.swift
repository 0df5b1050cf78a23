// Repair (`POST /admin/repair`, or `availability.auto_repair` after a failed periodic verify): the executor
// compares the in-sync replicas' digests with writes paused and hands the `RepairPlan` in while they still are;
// each target leaves the in-sync set (persisted first, as any membership change) and is resynced by a state
// transfer that copies only from the plan's sources, the replicas holding the majority's copy.

extension TransactionManager {
    mutating func repair(_ plan: RepairPlan, into actions: inout [Action]) {
        let sources = Set(plan.sources)
        // The plan was made under this pause; a target that is no longer a participant, or sources that no longer
        // are, mean the membership moved since: leave it to the next verify.
        let targets = plan.targets.filter { participantIDs.contains($0) && transfers[$0] == nil }
        guard !targets.isEmpty, sources.isSubset(of: Set(participantIDs)) else { return }
        for id in targets {
            guard let index = slots.firstIndex(where: { $0.replica.id == id }) else { continue }
            slots[index].syncing = true
            actions.append(.note(.warning, "repair: \(id) differs from the majority (\(plan.digests[id] ?? "?") against "
                + "\(plan.majority ?? "?")): resyncing it from \(plan.sources.joined(separator: ", "))"))
        }
        bootstrapRound += 1
        membershipChanged(into: &actions)
        for id in targets {
            guard let index = slots.firstIndex(where: { $0.replica.id == id }) else { continue }
            transfers[id] = Transfer(replica: slots[index].replica, sources: sources)
            startAttempt(id, into: &actions)
        }
    }
}
