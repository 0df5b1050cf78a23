import KVCommon

/// What one simulated run looks like: derived from its seed alone, so `KV_SIM_SEED=<seed>` replays it.
struct SimConfig {
    /// How messages travel.
    enum Network: String {
        /// What the real system has: master↔replica is one pipelined connection per replica (requests arrive
        /// in send order, replies in request order); messages are lost only when a connection breaks, and
        /// then the caller learns the calls failed.
        case tcp
        /// Connections also stall and break in the middle of a stream, losing what is in flight on them.
        case chaos
    }

    /// A deliberately broken executor, to prove the checker has teeth.
    enum Mutation: String, CaseIterable {
        case none
        /// The master sends `com` as soon as the COMMIT record is appended, without waiting for its fsync.
        case comBeforeDurable
        /// A replica answers a peer's `qry` for a seq it committed with "aborted".
        case qryLiesAborted
        /// A replica sends replies without waiting for the records listed before them to be fsynced.
        case replyBeforeDurable
        /// A master that starts does not give every lease its full TTL again: it counts the leases' time as if
        /// their deadlines had run on while it was down (3 s, the longest TTL the simulation grants).
        case leaseRecoveryCountsDowntime
        /// After a removal's compare failed, the master takes a read of a key that failed (its wait for a locked
        /// key ran out) as "absent", and marks the key stale (the bug `LeaseTable.version(from:)` fixed).
        case leaseRefreshReadsFailureAsAbsent
        /// The master persists ejected replicas as in sync: a restart counts them in sync again, though writes
        /// committed without them.
        case ejectionNotPersisted
        /// Reads still go to an ejected replica, as if the executor routed them by the view before the ejection.
        case ejectedReplicaServesReads
    }

    var seed: UInt64
    var network: Network
    var mutation: Mutation
    /// Random steps before faults stop and the run heals.
    var steps: Int
    /// Writes the client issues at most in one run.
    var maxWrites: Int
    /// Transactions running at once at most (`in_flight_transactions_max`).
    var maxInFlight: Int
    /// The small key space, so transactions conflict.
    var keys: [[UInt8]]
    /// Steps allowed to reach quiescence after healing.
    var quiescenceBudget: Int
    /// Percent chance that a replica cannot reach the master's query port (a partition) and asks its peers.
    var partitionPercent: Int
    /// Weight of each crash and connection reset among the ~1000 of a step's ordinary choices (0 = none).
    var faultWeight: Int
    /// Weight of reloads (remove, re-add, move to a spare node, add one) and of edits of cluster.yaml that the
    /// master reads only at its next start.
    var reloadWeight: Int
    /// Age (logical ms, 10 per step) after which a live in-doubt seq is eligible for replica-driven resolution.
    var inDoubtLimitMs: UInt64
    /// The decision log compacts past this many bytes (small, so compactions happen).
    var compactBytes: Int
    /// Whether this run starts a second master process on the same decision-log directory.
    var secondMaster: Bool
    /// Weight of a client's lease request (grant, attach, keepalive, revoke) among a step's choices (0 = none).
    var leaseWeight: Int
    /// Lease requests clients make at most in one run.
    var maxLeaseRequests: Int
    /// Weight of a client read among a step's choices.
    var readWeight = 10
    /// Ejection on in some seeds (the delay is only a label: the simulation fires timers in any order).
    var availability: ClusterConfig.Availability

    static let replicaNodes = ["r1", "r2", "r3"]
    /// Replica processes not in the first configuration: targets for a move or an added replica.
    static let spareNodes = ["s1", "s2"]

    static func make(seed: UInt64, mutation: Mutation = .none) -> SimConfig {
        var random = SimRandom(seed: seed ^ 0x5EED_C0F1_6A11_0000)
        let keyCount = 2 + random.below(3)
        return SimConfig(
            seed: seed,
            network: random.below(3) == 0 ? .chaos : .tcp,
            mutation: mutation,
            steps: 150 + random.below(350),
            maxWrites: 12 + random.below(30),
            maxInFlight: 1 + random.below(4),
            keys: (0..<keyCount).map { [UInt8(ascii: "a") + UInt8($0)] },
            quiescenceBudget: 8_000,
            partitionPercent: random.pick([0, 10, 30]),
            faultWeight: random.pick([1, 2, 4]),
            reloadWeight: random.pick([0, 1, 3]),
            inDoubtLimitMs: random.pick([0, 200, 600]),
            compactBytes: random.pick([120, 400, 1 << 20]),
            secondMaster: random.percent(15),
            leaseWeight: random.pick([0, 40, 100]),
            maxLeaseRequests: 20 + random.below(40),
            availability: ClusterConfig.Availability(ejectAfterMs: random.pick([0, 0, 300]),
                                                     minInSyncReplicas: random.pick([nil, 1, 2]))
        )
    }
}
