@testable import KVCommon
import XCTest

/// The master's side of fencing (`TransactionManager+Fencing`): the master started last takes over, and one that
/// finds itself fenced afterwards stays out.
final class TransactionManagerFencingTests: XCTestCase {
    typealias Action = TransactionManager.Action
    private let epochSeqs = TransactionManager.seqsPerEpoch

    private func replica(_ id: String) -> ClusterConfig.Replica {
        ClusterConfig.Replica(id: id, host: "h-\(id)", port: 7000, dataDir: "/data/\(id)")
    }

    private func manager(_ replicas: [ClusterConfig.Replica], epoch: UInt64) -> TransactionManager {
        let settings = TransactionManager.Settings(masterID: "m1", replicas: replicas, timeouts: ClusterConfig.Timeouts(),
                                                   inFlightMax: 16, compactBytes: 1 << 20)
        let members = replicas.map { MasterState.Member(replica: $0, joinedAt: 0) }
        return TransactionManager(settings: settings, recovered: MasterState(seqEpoch: epoch - 1, members: members),
                                  decisions: [], run: "run1")
    }

    private func stat(_ replica: ClusterConfig.Replica, fence: (UInt64, String)? = nil, maxSeq: UInt64 = 0) -> WireReply {
        var stat = ReplicaStat(keys: 0, digest: 0, lastCommittedSeq: 0, inDoubt: [])
        stat.maxSeq = maxSeq
        if let (epoch, master) = fence {
            stat.fenceEpoch = epoch
            stat.fenceMaster = master
        }
        return WireReply(status: true, code: .ok, message: "ok", seq: 0, server: replica.id, stat: stat)
    }

    private func put(_ manager: inout TransactionManager, id: UInt64) -> [Action] {
        let op = WriteOp.put(key: Array("k\(id)".utf8), value: Array("v".utf8))
        return manager.handle(.write(id, .init(op)))
    }

    private func refusal(_ actions: [Action]) -> String? {
        for case .answerWrite(_, .refused(let reason)) in actions { return reason }
        return nil
    }

    private func closed(_ actions: [Action]) -> [String] {
        actions.compactMap { if case .closeLink(let replica) = $0 { return replica.id } else { return nil } }
    }

    func testTheLinkIdentityNamesTheRun() {
        XCTAssertEqual(manager([replica("r1")], epoch: 3).linkIdentity, "m1/run1")
    }

    func testAStartingMasterTakesOverAboveAnotherMastersFence() {
        let (r1, r2) = (replica("r1"), replica("r2"))
        var master = manager([r1, r2], epoch: 3)
        _ = master.handle(.start)
        XCTAssertEqual(master.seqEpoch, 3)
        let actions = master.handle(.replied(r1, .connect, stat(r1, fence: (7, "m2/x"))))
        guard let persistAt = actions.firstIndex(where: { if case .persist = $0 { return true }; return false }),
              case .persist(let state) = actions[persistAt] else { return XCTFail("no persist in \(actions)") }
        XCTAssertEqual(state.seqEpoch, 8, "above the fence")
        XCTAssertEqual(state.presumeAbortFrom, 8 * epochSeqs, "the other master's seqs are not this log's to presume")
        XCTAssertEqual(closed(actions), ["r1", "r2"], "every link reconnects under the new epoch")
        let firstClose = actions.firstIndex { if case .closeLink = $0 { return true }; return false }!
        XCTAssertLessThan(persistAt, firstClose, "the epoch is durable before any link states it")
        _ = master.handle(.replied(r2, .connect, stat(r2)))
        XCTAssertNil(master.fenced)
        let write = put(&master, id: 1)
        XCTAssertNil(refusal(write), "the master that took over writes")
        let seqs = write.compactMap { if case .send(_, let request, .txn) = $0 { return request.seq } else { return nil } }
        XCTAssertEqual(seqs.first, 8 * epochSeqs + 1)
    }

    func testTheSameRunAtItsOwnEpochIsNotAFence() {
        let r1 = replica("r1")
        var master = manager([r1], epoch: 3)
        _ = master.handle(.start)
        let actions = master.handle(.replied(r1, .connect, stat(r1, fence: (3, "m1/run1"))))
        XCTAssertTrue(closed(actions).isEmpty)
        XCTAssertEqual(master.seqEpoch, 3)
        // Another run of the same id at the same epoch (a copy of the decision log) is another master.
        var copy = manager([r1], epoch: 3)
        _ = copy.handle(.start)
        _ = copy.handle(.replied(r1, .connect, stat(r1, fence: (3, "m1/other"))))
        XCTAssertEqual(copy.seqEpoch, 4)
    }

    func testAMasterFencedAfterItStartedRefusesWritesAndNeverMovesItsEpoch() {
        let (r1, r2) = (replica("r1"), replica("r2"))
        var master = manager([r1, r2], epoch: 3)
        _ = master.handle(.start)
        _ = master.handle(.replied(r1, .connect, stat(r1)))
        _ = master.handle(.replied(r2, .connect, stat(r2)))
        XCTAssertNil(refusal(put(&master, id: 1)))
        // Another master took over; its seqs are beyond this one's, which would otherwise move the epoch.
        let actions = master.handle(.replied(r2, .probe, stat(r2, fence: (4, "m1/later"), maxSeq: 4 * epochSeqs + 9)))
        XCTAssertTrue(actions.allSatisfy { if case .persist = $0 { return false }; return true }, "\(actions)")
        XCTAssertTrue(closed(actions).isEmpty)
        XCTAssertEqual(master.seqEpoch, 3)
        XCTAssertNotNil(master.fenced)
        let refused = refusal(put(&master, id: 2))
        XCTAssertTrue(refused?.contains("fenced") == true, refused ?? "not refused")
    }

    func testAFencedRefusalAfterTheStartFencesTheMaster() {
        let r1 = replica("r1")
        var master = manager([r1], epoch: 3)
        _ = master.handle(.start)
        _ = master.handle(.replied(r1, .connect, stat(r1)))
        // A refusal naming an epoch this master already left behind (an old link's) changes nothing.
        _ = master.handle(.replied(r1, .membership, WireReply(status: false, code: .fenced, message: "fenced", seq: 2,
                                                              server: "r1")))
        XCTAssertNil(master.fenced)
        _ = master.handle(.replied(r1, .membership, WireReply(status: false, code: .fenced, message: "fenced", seq: 5,
                                                              server: "r1")))
        XCTAssertNotNil(master.fenced)
        XCTAssertEqual(master.seqEpoch, 3)
    }

    func testWritesWaitingForAdmissionAreRefusedWhenTheMasterIsFenced() {
        let (r1, r2) = (replica("r1"), replica("r2"))
        var master = manager([r1, r2], epoch: 3)
        _ = master.handle(.start)
        _ = master.handle(.replied(r1, .connect, stat(r1)))
        _ = master.handle(.replied(r2, .connect, stat(r2)))
        _ = master.handle(.pause(1, timeoutMs: 1000))
        XCTAssertNil(refusal(put(&master, id: 1)), "held behind the pause")
        let actions = master.handle(.replied(r1, .probe, stat(r1, fence: (9, "m2/x"))))
        XCTAssertNotNil(refusal(actions), "the waiting write is answered at once")
    }
}
