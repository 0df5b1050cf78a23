// RepairPlan: which in-sync replicas a repair resyncs, from their content digests taken at one moment (writes
// paused). Replicas can only differ behind the master's back (a data directory edited or restored offline, a
// disk that returned other bytes without failing a checksum), so the copy to keep is the one most of them hold.
//
// Rules:
// - The majority is the `keys:digest` held by more than half of the in-sync replicas — of all of them, not only
//   those that answered: a replica that did not answer might hold the other copy.
// - Without a majority nothing changes (which copy is right is the operator's call), and the plan says so.
// - With one, every in-sync replica that answered another digest is resynced, and only from replicas that hold
//   the majority's: a repair never copies from a minority.

public struct RepairPlan: Equatable, Sendable {
    /// `keys:digest` of each in-sync replica that answered.
    public var digests: [String: String]
    /// In-sync replicas that did not answer.
    public var unanswered: [String]
    /// The copy more than half of the in-sync replicas hold, if any.
    public var majority: String?
    /// Replicas holding it: the only sources a resync may copy from.
    public var sources: [String]
    /// In-sync replicas that answered another digest: to be resynced.
    public var targets: [String]

    public init(inSync: [String], digests: [String: String]) {
        self.digests = digests
        unanswered = inSync.filter { digests[$0] == nil }
        var holders: [String: [String]] = [:]
        for id in inSync { if let digest = digests[id] { holders[digest, default: []].append(id) } }
        majority = holders.first { $0.value.count * 2 > inSync.count }?.key
        sources = majority.map { holders[$0] ?? [] } ?? []
        targets = majority.map { copy in inSync.filter { digests[$0] != nil && digests[$0] != copy } } ?? []
    }

    /// Whether every in-sync replica answered the same digest.
    public var identical: Bool { unanswered.isEmpty && Set(digests.values).count == 1 }

    /// A sentence for the operator.
    public var summary: String {
        if identical { return "all \(digests.count) in-sync replicas are identical; nothing to repair" }
        let held = digests.keys.sorted().map { "\($0) \(digests[$0]!)" }.joined(separator: ", ")
        let silent = unanswered.isEmpty ? "" : "; no answer from \(unanswered.joined(separator: ", "))"
        guard let majority else {
            return "no majority among the in-sync replicas (\(held)\(silent)): nothing changed; decide which copy is "
                + "right and resync the others (see docs/OPERATIONS.md, Repair)"
        }
        guard !targets.isEmpty else {
            return "the replicas that answered agree (\(majority))\(silent); nothing to repair"
        }
        return "resyncing \(targets.joined(separator: ", ")) from \(sources.joined(separator: ", ")) (the majority's "
            + "copy \(majority); \(held)\(silent))"
    }
}
