@testable import KVCommon
import XCTest

/// `RepairPlan` (which replicas a repair resyncs, and from which) and the manager's side of a repair: targets
/// leave the in-sync set durably and are synced only from the majority's replicas.
final class RepairPlanTests: XCTestCase {
    func testTheMinorityIsResyncedFromTheMajorityOnly() {
        let plan = RepairPlan(inSync: ["r1", "r2", "r3"], digests: ["r1": "5:bad", "r2": "4:good", "r3": "4:good"])
        XCTAssertEqual(plan.majority, "4:good")
        XCTAssertEqual(plan.targets, ["r1"])
        XCTAssertEqual(plan.sources, ["r2", "r3"])
        XCTAssertFalse(plan.identical)
        XCTAssertTrue(plan.summary.contains("resyncing r1 from r2, r3"), plan.summary)
    }

    func testWithoutAMajorityNothingChanges() {
        let split = RepairPlan(inSync: ["r1", "r2", "r3"], digests: ["r1": "1:a", "r2": "1:b", "r3": "1:c"])
        XCTAssertNil(split.majority)
        XCTAssertEqual(split.targets, [])
        XCTAssertTrue(split.summary.contains("no majority"), split.summary)
        // Two of three agree, but only if the silent one is counted: 2 of 4 in sync is not a majority.
        let silent = RepairPlan(inSync: ["r1", "r2", "r3", "r4"], digests: ["r1": "1:a", "r2": "1:a", "r3": "1:b"])
        XCTAssertNil(silent.majority, "a replica that did not answer may hold the other copy")
        XCTAssertEqual(silent.unanswered, ["r4"])
        let pair = RepairPlan(inSync: ["r1", "r2"], digests: ["r1": "1:a", "r2": "1:b"])
        XCTAssertNil(pair.majority)
    }

    func testIdenticalReplicasNeedNothing() {
        let plan = RepairPlan(inSync: ["r1", "r2", "r3"], digests: ["r1": "2:x", "r2": "2:x", "r3": "2:x"])
        XCTAssertTrue(plan.identical)
        XCTAssertEqual(plan.targets, [])
    }

    func testTheManagerResyncsTargetsFromTheSourcesOnly() {
        let replicas = StartedManager.replicas(["r1", "r2", "r3"])
        var manager = StartedManager.make(replicas)
        // r1 is listed first, so an unrestricted transfer would copy from it; the plan says it is the minority's
        // copy of nothing here, but r2 differs and must copy from r3 alone.
        let plan = RepairPlan(inSync: ["r1", "r2", "r3"], digests: ["r1": "1:a", "r2": "1:b", "r3": "1:a"])
        var restricted = plan
        restricted.sources = ["r3"]
        let actions = manager.handle(.repair(restricted))
        let persisted = actions.firstIndex { if case .persist(let s) = $0 { return s.members?.map(\.replica.id) == ["r1", "r3"] } else { return false } }
        XCTAssertNotNil(persisted, "the target leaves the in-sync set durably: \(actions)")
        XCTAssertEqual(manager.view.syncing, ["r2"])
        XCTAssertEqual(manager.transfers["r2"]?.source?.id, "r3", "the copy comes from an allowed source only")
        XCTAssertTrue(actions.contains { if case .send(replicas[1], let request, .transfer) = $0 { return request.command == .reset } else { return false } })
        XCTAssertTrue(manager.handle(.repair(plan)).isEmpty, "a target already being resynced is left alone")
    }
}
