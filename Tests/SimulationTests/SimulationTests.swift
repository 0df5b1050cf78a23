import Foundation
import KVCommon
import XCTest

/// Deterministic simulation of a cluster running the real `TransactionManager`, `Participant` and
/// `InDoubtTermination` (see `Simulation`).
///
/// - By default seeds 1...8,000 (the same on every run: a regression replays) and 2,000 more from a range that
///   moves each day (new schedules every day), both printed for replay.
/// - `KV_SIM_SEEDS=<n>` runs seeds 1...n instead, `KV_SIM_FIRST_SEED=<s>` starts elsewhere,
///   `KV_SIM_MAX_FAILURES=<n>` reports up to n failing seeds (default 3) before stopping.
/// - `KV_SIM_SEED=<seed>` replays exactly that seed and prints every event (add `KV_SIM_MUTATION=<name>` to
///   replay a seed of a deliberately broken variant).
/// - Swift seeds its hashing per process, and state transfer pages through a replica's dictionary in its order:
///   run with `SWIFT_DETERMINISTIC_HASHING=1` (scripts/test.sh does) so a seed replays in another process too.
/// - A run of 1,000 seeds or more also fails if it exercised too few faults or outcomes
///   (`SimStats.floorsPerThousandSeeds`): a schedule with faults off by accident would pass otherwise.
final class SimulationTests: XCTestCase {
    private static let fixedSeeds = 8_000
    private static let rotatingSeeds = 2_000

    private var environment: [String: String] { ProcessInfo.processInfo.environment }

    func testRandomizedSeedsKeepEveryInvariant() {
        if let text = environment["KV_SIM_SEED"] {
            guard let seed = UInt64(text) else { return XCTFail("KV_SIM_SEED must be a number, not '\(text)'") }
            let mutation = environment["KV_SIM_MUTATION"].flatMap(SimConfig.Mutation.init(rawValue:)) ?? .none
            let result = Simulation(config: .make(seed: seed, mutation: mutation), trace: .print).run()
            print("simulation seed \(seed): \(result.stats.summary)")
            if let failure = result.failure { XCTFail("seed \(seed) failed at step \(result.failedStep ?? 0): \(failure)") }
            return
        }
        var ranges: [ClosedRange<UInt64>]
        if let count = environment["KV_SIM_SEEDS"].flatMap(UInt64.init) {
            let first = environment["KV_SIM_FIRST_SEED"].flatMap(UInt64.init) ?? 1
            ranges = count > 0 ? [first...(first + count - 1)] : []
        } else {
            // A day's range: 1,000,000 plus 2,000 for each day since 1970, so every day runs schedules not run before.
            let day = UInt64(Date().timeIntervalSince1970 / 86_400)
            let first = 1_000_000 + day * UInt64(Self.rotatingSeeds)
            ranges = [1...UInt64(Self.fixedSeeds), first...(first + UInt64(Self.rotatingSeeds) - 1)]
        }
        for range in ranges {
            print("simulation: seeds \(range.lowerBound)...\(range.upperBound) (replay this range with "
                + "KV_SIM_FIRST_SEED=\(range.lowerBound) KV_SIM_SEEDS=\(range.count))")
        }
        let maxFailures = environment["KV_SIM_MAX_FAILURES"].flatMap(Int.init) ?? 3
        let clock = ContinuousClock()
        let began = clock.now
        var totals = SimStats()
        var failures = 0
        seeds: for range in ranges {
            for seed in range {
                let result = Simulation(config: .make(seed: seed)).run()
                totals.add(result.stats)
                guard let failure = result.failure else { continue }
                failures += 1
                report(result, failure: failure, trace: failures <= 3)
                if failures >= maxFailures { break seeds }
            }
        }
        print("simulation: \(totals.summary) in \(clock.now - began)")
        if totals.seeds >= 1_000 {
            for shortfall in totals.shortfalls() {
                XCTFail("simulation exercised too little (\(totals.seeds) seeds): \(shortfall)")
            }
        }
    }

    /// The floors have teeth: the same seeds with every fault switched off fall short on the faults (and on the
    /// outcomes that only faults bring about), though every invariant holds.
    func testARunWithItsFaultsOffFailsTheFloors() {
        var totals = SimStats()
        for seed in UInt64(1)...300 {
            var config = SimConfig.make(seed: seed)
            config.faultWeight = 0
            config.reloadWeight = 0
            config.partitionPercent = 0
            config.secondMaster = false
            let result = Simulation(config: config).run()
            XCTAssertNil(result.failure, "seed \(seed) without faults")
            totals.add(result.stats)
        }
        let short = Set(totals.shortfalls().map { String($0.prefix(while: { $0 != ":" })) })
        for name in ["master-crashes", "replica-crashes", "wipes", "reloads", "partitions"] {
            XCTAssertTrue(short.contains(name), "\(name) met its floor with faults off: \(totals.summary)")
        }
        XCTAssertFalse(short.contains("commits"), "a fault-free run still commits: \(totals.summary)")
    }

    /// The checker has teeth: each deliberately broken executor is caught within a bounded number of seeds.
    func testCheckerCatchesComSentBeforeCommitRecordIsDurable() {
        expectCaught(.comBeforeDurable, invariants: ["commit-record", "client-commit", "agreement", "index"])
    }

    func testCheckerCatchesReplicaAnsweringAbortedForACommittedSeq() {
        expectCaught(.qryLiesAborted, invariants: ["agreement"])
    }

    func testCheckerCatchesRepliesSentBeforeTheirRecordIsDurable() {
        expectCaught(.replyBeforeDurable, invariants: ["reply-durability"])
    }

    func testCheckerCatchesAMasterThatDoesNotExtendLeasesWhenItStarts() {
        expectCaught(.leaseRecoveryCountsDowntime, invariants: ["lease-early"])
    }

    func testCheckerCatchesALeaseRefreshThatTakesAFailedReadAsAbsent() {
        expectCaught(.leaseRefreshReadsFailureAsAbsent, invariants: ["lease-left", "lease-removal"], within: 2000) { config in
            config.leaseWeight = 100
            config.maxLeaseRequests = 80
            config.faultWeight = 4
        }
    }

    func testCheckerCatchesAnEjectionThatIsNotPersisted() {
        expectCaught(.ejectionNotPersisted, invariants: ["linearizable-read", "quiescence", "lost-write"],
                     within: 2000) { config in
            config.availability = ClusterConfig.Availability(ejectAfterMs: 300)
            config.faultWeight = 4
            config.readWeight = 80
        }
    }

    func testCheckerCatchesReadsServedByAnEjectedReplica() {
        expectCaught(.ejectedReplicaServesReads, invariants: ["linearizable-read"], within: 2000) { config in
            config.availability = ClusterConfig.Availability(ejectAfterMs: 300)
            config.readWeight = 80
            config.faultWeight = 4
        }
    }

    func testSameSeedReplaysTheSameRun() {
        for seed: UInt64 in [7, 8, 9] {
            let first = Simulation(config: .make(seed: seed), trace: .tail(200)).run()
            let second = Simulation(config: .make(seed: seed), trace: .tail(200)).run()
            XCTAssertEqual(first.trace, second.trace, "seed \(seed) is not deterministic")
            XCTAssertEqual(first.stats.summary, second.stats.summary)
        }
    }

    // MARK: - Helpers

    /// Runs seeds until one passes as is but fails with `mutation` on one of the invariants that mutation
    /// breaks, so a detection is attributed to the mutation and not to a bug the unmutated code may have
    /// (a mutation also changes the schedule, which can expose such a bug first; those seeds are skipped).
    private func expectCaught(_ mutation: SimConfig.Mutation, invariants: [String], within seeds: UInt64 = 300,
                              adjust: (inout SimConfig) -> Void = { _ in }) {
        var otherFailures = 0
        for seed in 1...seeds {
            var config = SimConfig.make(seed: seed, mutation: mutation)
            adjust(&config)
            let result = Simulation(config: config).run()
            guard let failure = result.failure else { continue }
            config.mutation = .none
            guard Simulation(config: config).run().failure == nil else { continue }
            guard invariants.contains(where: { failure.hasPrefix($0 + ":") }) else {
                otherFailures += 1
                continue
            }
            print("simulation: mutation \(mutation.rawValue) caught by seed \(seed) at step \(result.failedStep ?? 0) "
                + "(\(otherFailures) earlier seeds failed on other invariants): \(failure)")
            return
        }
        XCTFail("mutation \(mutation.rawValue) did not trip \(invariants) within \(seeds) seeds")
    }

    /// Prints the failing seed, its step, the events leading to it (the seed is rerun with a trace tail) and the
    /// one-line command that replays it.
    private func report(_ result: SimResult, failure: String, trace: Bool) {
        print("simulation FAILED: seed \(result.seed) (\(result.config.network.rawValue)) at step \(result.failedStep ?? 0): \(failure)")
        if trace {
            let replay = Simulation(config: result.config, trace: .tail(80)).run()
            print("last events of seed \(result.seed):")
            for line in replay.trace { print("  \(line)") }
        }
        print("replay with: SWIFT_DETERMINISTIC_HASHING=1 KV_SIM_SEED=\(result.seed) swift test "
            + "--filter SimulationTests.SimulationTests/testRandomizedSeedsKeepEveryInvariant")
        XCTFail("seed \(result.seed) failed at step \(result.failedStep ?? 0): \(failure)")
    }
}
