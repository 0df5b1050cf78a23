@testable import KVCommon
import XCTest

/// The write gate (`TransactionManager+Writes`, "Pauses"): verify, reloads and the final step of a transfer ask
/// for writes to pause. A pause is granted only once every admitted write has been answered, writes that arrive
/// meanwhile wait (bounded by the admission time-out), a pause that cannot drain in time fails, and releasing it
/// admits the writes that waited.
final class TransactionManagerPauseTests: XCTestCase {
    typealias Action = TransactionManager.Action
    private let replicas = StartedManager.replicas(["r1", "r2"])

    /// A started manager whose replicas are connected, in sync and have reported.
    private func started() -> TransactionManager { StartedManager.make(replicas) }

    private func put(_ manager: inout TransactionManager, _ id: UInt64) -> [Action] {
        manager.handle(.write(id, .init(.put(key: Array("k\(id)".utf8), value: [1]))))
    }

    /// The seq of the prepare `actions` send, nil when they send none.
    private func preparedSeq(_ actions: [Action]) -> UInt64? {
        for case .send(_, let request, .txn(let seq)) in actions where request.command == .put { return seq }
        return nil
    }

    /// Every replica votes yes for `seq` and its COMMIT record becomes durable: the write is answered.
    private func commit(_ manager: inout TransactionManager, _ seq: UInt64) -> [Action] {
        var actions: [Action] = []
        for replica in replicas {
            actions += manager.handle(.replied(replica, .txn(seq), WireReply(status: true, code: .ok, message: "prepared",
                                                                             seq: seq, server: replica.id)))
        }
        return actions + manager.handle(.logged(.commit(seq)))
    }

    private func answered(_ actions: [Action], _ id: UInt64) -> TransactionManager.WriteAnswer? {
        for case .answerWrite(id, let answer) in actions { return answer }
        return nil
    }

    func testAPauseWaitsForRunningWritesAndHoldsNewOnesUntilReleased() {
        var manager = started()
        guard let first = preparedSeq(put(&manager, 1)) else { return XCTFail("the first write was not admitted") }
        let asked = manager.handle(.pause(7, timeoutMs: 500))
        XCTAssertFalse(asked.contains(.paused(7)), "granted while a write is unanswered: \(asked)")
        XCTAssertTrue(asked.contains(.startTimer(.pause(.client(7)), ms: 500)))

        let held = put(&manager, 2)
        XCTAssertNil(preparedSeq(held), "a write admitted while a pause waits to drain")
        XCTAssertTrue(held.contains { if case .startTimer(.admission(2), _) = $0 { return true } else { return false } })

        let drained = commit(&manager, first)
        guard case .outcome(let outcome)? = answered(drained, 1) else { return XCTFail("\(drained)") }
        XCTAssertTrue(outcome.committed)
        XCTAssertTrue(drained.contains(.paused(7)), "granted once the running write was answered: \(drained)")
        XCTAssertTrue(drained.contains(.cancelTimer(.pause(.client(7)))))
        XCTAssertNil(preparedSeq(drained), "held writes stay held while paused")

        let released = manager.handle(.resume(7))
        XCTAssertTrue(released.contains(.cancelTimer(.admission(2))))
        guard let second = preparedSeq(released) else { return XCTFail("the held write was not admitted: \(released)") }
        XCTAssertGreaterThan(second, first)
    }

    func testAPauseThatCannotDrainInTimeFailsAndLetsWritesGoOn() {
        var manager = started()
        XCTAssertNotNil(preparedSeq(put(&manager, 1)))
        _ = manager.handle(.pause(7, timeoutMs: 500))
        XCTAssertNil(preparedSeq(put(&manager, 2)))
        let timedOut = manager.handle(.timer(.pause(.client(7))))
        XCTAssertTrue(timedOut.contains(.pauseFailed(7, "running writes did not pause in time")), "\(timedOut)")
        XCTAssertNotNil(preparedSeq(timedOut), "the write held for the failed pause goes on")
        XCTAssertFalse(manager.handle(.resume(7)).contains { if case .paused = $0 { return true } else { return false } })
    }

    func testAWriteHeldTooLongIsRefusedSayingWhy() {
        var manager = started()
        XCTAssertTrue(manager.handle(.pause(7, timeoutMs: 500)).contains(.paused(7)), "nothing running: granted at once")
        XCTAssertNil(preparedSeq(put(&manager, 2)))
        let refused = manager.handle(.timer(.admission(2)))
        guard case .refused(let reason)? = answered(refused, 2) else { return XCTFail("\(refused)") }
        XCTAssertTrue(reason.contains("held back too long"), reason)
        XCTAssertNil(preparedSeq(manager.handle(.resume(7))), "a refused write is not admitted later")
    }
}
