@testable import KVCommon
import XCTest

final class InDoubtTerminationTests: XCTestCase {
    private let r1 = Member(id: "r1", host: "h1", port: 1)
    private let r2 = Member(id: "r2", host: "h2", port: 2)
    private let r3 = Member(id: "r3", host: "h3", port: 3)

    private func item(_ seq: UInt64, members: [Member], ageMs: UInt64 = 10_000) -> ReplicaStat.InDoubt {
        ReplicaStat.InDoubt(seq: seq, ageMs: ageMs, recovered: false, members: members)
    }

    private func answer(_ code: ReplyCode, status: Bool = true, seq: UInt64 = 7) -> WireReply {
        WireReply(status: status, code: code, message: "", seq: seq, server: "x")
    }

    /// The master first, then each of the transaction's other participants, never a replica outside them: a
    /// replica added later, removed, or wiped could claim "never prepared" for a transaction that committed.
    func testAsksTheMasterThenOnlyTheOtherParticipants() {
        var termination = InDoubtTermination(liveLimitMs: 4000, askMaster: true, me: "r1")
        XCTAssertEqual(termination.handle(.tick(inDoubt: [item(7, members: [r1, r2])])), [.ask(.master, seq: 7)])
        XCTAssertEqual(termination.handle(.answer(seq: 7, from: .master, answer(.busy, status: false))),
                       [.ask(.peer(r2), seq: 7)])
        XCTAssertEqual(termination.handle(.answer(seq: 7, from: .peer(r2), answer(.inDoubt))), [],
                       "r3 took no part in 7: nobody else is asked")
        XCTAssertEqual(termination.blocked, [7])
        // The next round asks again, and a definite answer decides.
        XCTAssertEqual(termination.handle(.tick(inDoubt: [item(7, members: [r1, r2])])), [.ask(.master, seq: 7)])
        XCTAssertEqual(termination.handle(.answer(seq: 7, from: .master, nil)), [.ask(.peer(r2), seq: 7)])
        XCTAssertEqual(termination.handle(.answer(seq: 7, from: .peer(r2), answer(.committed))),
                       [.decide(seq: 7, committed: true)])
        XCTAssertEqual(termination.blocked, [])
    }

    func testNoAnswerButADefiniteOneDecides() {
        var termination = InDoubtTermination(liveLimitMs: 4000, askMaster: false, me: "r2")
        XCTAssertEqual(termination.handle(.tick(inDoubt: [item(7, members: [r1, r2, r3])])), [.ask(.peer(r1), seq: 7)])
        for code: ReplyCode in [.notSynced, .unknownTransaction] {
            _ = termination.handle(.answer(seq: 7, from: .peer(r1), answer(code, status: false)))
            _ = termination.handle(.tick(inDoubt: [item(7, members: [r1, r2, r3])]))
        }
        XCTAssertEqual(termination.handle(.answer(seq: 7, from: .peer(r1), answer(.aborted, status: false))),
                       [.ask(.peer(r3), seq: 7)], "a failed reply is no answer, whatever its code")
        XCTAssertEqual(termination.handle(.answer(seq: 7, from: .peer(r3), answer(.aborted))),
                       [.decide(seq: 7, committed: false)])
    }

    /// A prepare recorded without participants (from before they were announced) is the master's alone to tell;
    /// a young live transaction is the coordinator's business.
    func testWithoutParticipantsOnlyTheMasterIsAskedAndYoungTransactionsWait() {
        var termination = InDoubtTermination(liveLimitMs: 4000, askMaster: true, me: "r1")
        XCTAssertEqual(termination.handle(.tick(inDoubt: [item(7, members: []), item(8, members: [r1, r2], ageMs: 10)])),
                       [.ask(.master, seq: 7)])
        XCTAssertEqual(termination.handle(.answer(seq: 7, from: .master, nil)), [])
        XCTAssertEqual(termination.blocked, [7])
    }
}
