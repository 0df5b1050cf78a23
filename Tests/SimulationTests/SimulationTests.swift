import Foundation
import XCTest

/// Deterministic simulation of a cluster running the real `TransactionManager`, `Participant` and
/// `InDoubtTermination` (see `Simulation`).
///
/// - `KV_SIM_SEEDS=<n>` runs seeds 1...n (default 10,000), `KV_SIM_FIRST_SEED=<s>` starts elsewhere,
///   `KV_SIM_MAX_FAILURES=<n>` reports up to n failing seeds (default 3) before stopping.
/// - `KV_SIM_SEED=<seed>` replays exactly that seed and prints every event (add `KV_SIM_MUTATION=<name>` to
///   replay a seed of a deliberately broken variant).
/// - Swift seeds its hashing per process, and state transfer pages through a replica's dictionary in its order:
///   run with `SWIFT_DETERMINISTIC_HASHING=1` (scripts/test.sh does) so a seed replays in another process too.
final class SimulationTests: XCTestCase {
    private static let defaultSeeds = 10_000

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
        let count = environment["KV_SIM_SEEDS"].flatMap(Int.init) ?? Self.defaultSeeds
        let first = environment["KV_SIM_FIRST_SEED"].flatMap(UInt64.init) ?? 1
        let maxFailures = environment["KV_SIM_MAX_FAILURES"].flatMap(Int.init) ?? 3
        let clock = ContinuousClock()
        let began = clock.now
        var totals = SimStats()
        var failures = 0
        for seed in first..<(first + UInt64(count)) {
            let result = Simulation(config: .make(seed: seed)).run()
            totals.add(result.stats)
            guard let failure = result.failure else { continue }
            failures += 1
            report(result, failure: failure, trace: failures <= 3)
            if failures >= maxFailures { break }
        }
        print("simulation: \(totals.summary) in \(clock.now - began)")
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
    private func expectCaught(_ mutation: SimConfig.Mutation, invariants: [String], within seeds: UInt64 = 300) {
        var otherFailures = 0
        for seed in 1...seeds {
            let result = Simulation(config: .make(seed: seed, mutation: mutation)).run()
            guard let failure = result.failure, Simulation(config: .make(seed: seed)).run().failure == nil else { continue }
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
