@testable import KVCommon
import XCTest

/// One state-transfer attempt, step by step: a copy joins only when the target's key count and digest equal
/// the source's, with nothing in doubt at the source; any mismatch fails the attempt without a `join` ever
/// being sent, so a replica whose copy differs never takes part.
final class StateTransferTests: XCTestCase {
    private typealias Action = StateTransfer.Action

    private func ok(_ server: String, seq: UInt64? = nil, stat: ReplicaStat? = nil) -> WireReply {
        WireReply(status: true, code: .ok, message: "ok", seq: seq, server: server, stat: stat)
    }

    private func stat(keys: Int, digest: UInt64, inDoubt: [UInt64] = []) -> ReplicaStat {
        ReplicaStat(keys: keys, digest: digest, lastCommittedSeq: 9, inDoubt: inDoubt.map { .init(seq: $0, ageMs: 1) })
    }

    private func sentJoin(_ actions: [Action]) -> Bool {
        actions.contains { if case .send(_, let request, .join) = $0 { return request.command == .join } else { return false } }
    }

    /// Drives an attempt from `begin` to the verifying step: one page of two entries, no catch-up, the pause
    /// granted at seq 9. Returns every action it produced.
    private func copied(_ transfer: inout StateTransfer) -> [Action] {
        var all = transfer.handle(.begin)
        all += transfer.handle(.reply(.reset, ok("r4")))
        all += transfer.handle(.reply(.snap, ok("r1", seq: 77, stat: stat(keys: 2, digest: 5))))
        var page = ok("r1")
        page.page = SyncPage(entries: [SyncPage.Entry(key: [1], value: [1], version: 3, created: 3),
                                       SyncPage.Entry(key: [2], value: [2], version: 4, created: 4)], done: true)
        all += transfer.handle(.reply(.page, page))
        all += transfer.handle(.reply(.load, ok("r4")))
        all += transfer.handle(.reply(.load, ok("r4")))
        XCTAssertTrue(transfer.wantsDirtyKeys)
        all += transfer.handle(.caughtUp(dirty: []))
        XCTAssertTrue(all.contains(.pause), "a short catch-up asks for the pause: \(all)")
        all += transfer.handle(.paused(dirty: [], joinAt: 9))
        XCTAssertEqual(transfer.progress.phase, "verifying")
        return all
    }

    func testEqualDigestsJoinAtThePausedSeq() {
        var transfer = StateTransfer(source: "r1", attempt: 3, readTimeoutMs: 100)
        var actions = copied(&transfer)
        actions += transfer.handle(.reply(.stat(.source), ok("r1", stat: stat(keys: 2, digest: 0xABC))))
        XCTAssertFalse(sentJoin(actions), "no join before both digests are in")
        let verified = transfer.handle(.reply(.stat(.target), ok("r4", stat: stat(keys: 2, digest: 0xABC))))
        guard case .send(.target, let join, .join)? = verified.first else { return XCTFail("\(verified)") }
        XCTAssertEqual(join.seq, 9)
        XCTAssertEqual(join.value, Array("3".utf8), "the join names the attempt whose reset it follows")
        XCTAssertEqual(transfer.handle(.reply(.join, ok("r4"))), [.joined])
        XCTAssertEqual(transfer.progress.phase, "joined")
    }

    func testADigestMismatchFailsTheAttemptAndNeverJoins() {
        for (source, target) in [(stat(keys: 2, digest: 0xABC), stat(keys: 2, digest: 0xABD)),
                                 (stat(keys: 2, digest: 0xABC), stat(keys: 3, digest: 0xABC))] {
            var transfer = StateTransfer(source: "r1", attempt: 1, readTimeoutMs: 100)
            var actions = copied(&transfer)
            actions += transfer.handle(.reply(.stat(.target), ok("r4", stat: target)))
            actions += transfer.handle(.reply(.stat(.source), ok("r1", stat: source)))
            XCTAssertFalse(sentJoin(actions), "\(actions)")
            guard case .failed(let reason)? = actions.last else { return XCTFail("\(actions)") }
            XCTAssertTrue(reason.contains("digest differs after copy"), reason)
            XCTAssertEqual(transfer.progress.phase, "retrying")
            XCTAssertEqual(transfer.progress.error, reason, "/status shows why in sync.error")
            // Whatever arrives for the failed attempt later changes nothing.
            XCTAssertEqual(transfer.handle(.reply(.join, ok("r4"))), [])
            XCTAssertEqual(transfer.handle(.reply(.stat(.target), ok("r4", stat: source))), [])
        }
    }

    /// A transaction still prepared at the source may commit after the copy: equal digests prove nothing then.
    func testAnUndecidedTransactionAtTheSourceFailsTheAttempt() {
        var transfer = StateTransfer(source: "r1", attempt: 1, readTimeoutMs: 100)
        var actions = copied(&transfer)
        actions += transfer.handle(.reply(.stat(.source), ok("r1", stat: stat(keys: 2, digest: 7, inDoubt: [12]))))
        actions += transfer.handle(.reply(.stat(.target), ok("r4", stat: stat(keys: 2, digest: 7))))
        XCTAssertFalse(sentJoin(actions))
        guard case .failed(let reason)? = actions.last else { return XCTFail("\(actions)") }
        XCTAssertTrue(reason.contains("holds undecided transactions [12]"), reason)
    }

    func testASilentStepFailsTheAttemptAtItsDeadline() {
        var transfer = StateTransfer(source: "r1", attempt: 1, readTimeoutMs: 100)
        let begun = transfer.handle(.begin)
        XCTAssertTrue(begun.contains(.deadline(ms: 100)), "\(begun)")
        guard case .failed(let reason)? = transfer.handle(.deadlinePassed).last else { return XCTFail() }
        XCTAssertTrue(reason.contains("no answer within the time-out"), reason)
        XCTAssertEqual(transfer.handle(.reply(.reset, ok("r4"))), [], "a late answer does not revive it")
    }
}
