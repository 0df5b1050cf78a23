@testable import KVCommon
import XCTest

/// The replica's master fence (`MasterFence` in `Participant`): a master another one took over from is locked out.
final class MasterFenceTests: XCTestCase {
    private let key = Array("key".utf8)
    private let epochSeqs = TransactionManager.seqsPerEpoch
    private var nextID: Participant.RequestID = 0

    private func send(_ request: WireRequest, _ link: MasterLink?, to participant: inout Participant)
        -> [Participant.Action] {
        nextID += 1
        return participant.handle(.request(request, nextID, nowMs: 0, link: link))
    }

    private func code(_ actions: [Participant.Action]) -> ReplyCode? {
        for case .reply(_, let reply) in actions { return reply.code }
        return nil
    }

    private func put(_ seq: UInt64) -> WireRequest { .put(seq, key, Array("v".utf8)) }

    func testTheFirstMasterLinkFencesDurablyBeforeItsReply() {
        var participant = Participant(server: "r1")
        let link = MasterLink(master: "m1", epoch: 3)
        let actions = send(put(3 * epochSeqs + 1), link, to: &participant)
        XCTAssertEqual(actions.first, .persist(.fence(epoch: 3, master: "m1")), "the fence is on disk before the vote")
        XCTAssertEqual(actions.dropFirst().first, .persist(.prepare(seq: 3 * epochSeqs + 1,
                                                                    op: .put(key: key, value: Array("v".utf8)))))
        XCTAssertEqual(code(actions), .ok)
        XCTAssertEqual(participant.fence, MasterFence(epoch: 3, master: "m1"))
        // The same master again: nothing more to persist.
        XCTAssertEqual(send(.com(3 * epochSeqs + 1), link, to: &participant).first, .persist(.commit(seq: 3 * epochSeqs + 1)))
    }

    func testAnOlderEpochOrAnotherMasterOfTheSameEpochIsFenced() {
        var participant = Participant(server: "r1")
        _ = send(.stat, MasterLink(master: "m1", epoch: 5), to: &participant)
        XCTAssertEqual(participant.fence.epoch, 0, "reads do not move the fence")
        _ = send(put(5 * epochSeqs + 1), MasterLink(master: "m1", epoch: 5), to: &participant)
        for stale in [MasterLink(master: "m1", epoch: 4), MasterLink(master: "m2", epoch: 5)] {
            for request in [put(stale.epoch * epochSeqs + 7), .del(stale.epoch * epochSeqs + 7, key),
                            .com(5 * epochSeqs + 1), .abrt(5 * epochSeqs + 1), WireRequest(seq: 1, command: .qry),
                            WireRequest(seq: 9, command: .memb, key: [], value: Array("r1@h:1".utf8)),
                            WireRequest(seq: nil, command: .reset)] {
                let actions = send(request, stale, to: &participant)
                XCTAssertEqual(actions.count, 1, "\(request.command) from \(stale) is refused without a record")
                XCTAssertEqual(code(actions), .fenced, "\(request.command) from \(stale)")
                if case .reply(_, let reply) = actions[0] { XCTAssertEqual(reply.seq, 5, "the reply names the epoch in force") }
            }
            // Reads stay open to it.
            XCTAssertEqual(code(send(.get(Array("absent".utf8)), stale, to: &participant)), .notFound)
            XCTAssertEqual(code(send(.stat, stale, to: &participant)), .ok)
        }
        XCTAssertEqual(participant.inDoubt, [5 * epochSeqs + 1], "the fenced master changed nothing")
    }

    func testANewerMasterTakesOverAndTheFenceNeverMovesBack() {
        var participant = Participant(server: "r1")
        _ = send(put(2 * epochSeqs + 1), MasterLink(master: "m1", epoch: 2), to: &participant)
        _ = send(.com(2 * epochSeqs + 1), MasterLink(master: "m1", epoch: 2), to: &participant)
        let actions = send(put(3 * epochSeqs + 1), MasterLink(master: "m2", epoch: 3), to: &participant)
        XCTAssertEqual(actions.first, .persist(.fence(epoch: 3, master: "m2")))
        XCTAssertEqual(code(send(.com(3 * epochSeqs + 1), MasterLink(master: "m1", epoch: 2), to: &participant)), .fenced)
        XCTAssertEqual(participant.inDoubt, [3 * epochSeqs + 1])
        // The new master may still decide the old epoch's transactions (redelivery after a take-over).
        XCTAssertEqual(code(send(.com(2 * epochSeqs + 1), MasterLink(master: "m2", epoch: 3), to: &participant)), .ok)
    }

    func testSeqsOutsideTheLinksEpochAreRefused() {
        var participant = Participant(server: "r1")
        let link = MasterLink(master: "m1", epoch: 4)
        for seq in [4 * epochSeqs - 1, 5 * epochSeqs, UInt64.max] {
            XCTAssertEqual(code(send(put(seq), link, to: &participant)), .badRequest, "prepare of \(seq)")
            XCTAssertEqual(code(send(.del(seq, key), link, to: &participant)), .badRequest, "prepare of \(seq)")
        }
        // From the review: pre-aborting a seq the master will issue later (or the top seq) is refused.
        for seq in [5 * epochSeqs, UInt64.max] {
            XCTAssertEqual(code(send(.abrt(seq), link, to: &participant)), .badRequest, "abrt of \(seq)")
            XCTAssertEqual(code(send(.com(seq), link, to: &participant)), .badRequest, "com of \(seq)")
            XCTAssertEqual(code(send(WireRequest(seq: seq, command: .qry), link, to: &participant)), .badRequest)
        }
        XCTAssertEqual(participant.decided.count, 0, "nothing was recorded")
        XCTAssertEqual(participant.decided.maxRecordedSeq, 0)
        // A decision of an earlier epoch is the master's to redeliver.
        XCTAssertEqual(code(send(.abrt(3 * epochSeqs + 5), link, to: &participant)), .ok)
        XCTAssertEqual(code(send(put(4 * epochSeqs + 1), link, to: &participant)), .ok)
        // A nonsense epoch proves nothing.
        XCTAssertEqual(code(send(put(1), MasterLink(master: "m1", epoch: UInt64.max / 2), to: &participant)), .badRequest)
    }

    func testAReplicaWithoutAFenceTakesTheFirstMasterOfEpochZero() {
        var participant = Participant(server: "r1")
        XCTAssertEqual(send(put(1), MasterLink(master: "loader", epoch: 0), to: &participant).first,
                       .persist(.fence(epoch: 0, master: "loader")))
        XCTAssertEqual(code(send(.com(1), MasterLink(master: "other", epoch: 0), to: &participant)), .fenced)
        XCTAssertEqual(code(send(.com(1), MasterLink(master: "m1", epoch: 1), to: &participant)), .ok)
    }

    func testLinksWithoutAHandshakeAreNotFenced() {
        var participant = Participant(server: "r1")
        _ = send(put(5 * epochSeqs + 1), MasterLink(master: "m1", epoch: 5), to: &participant)
        XCTAssertEqual(code(send(.com(5 * epochSeqs + 1), nil, to: &participant)), .ok)
        XCTAssertEqual(participant.fence.epoch, 5)
    }

    func testTheFenceSurvivesReplayAndSnapshots() throws {
        var participant = Participant(server: "r1")
        let actions = send(put(7 * epochSeqs + 1), MasterLink(master: "m2", epoch: 7), to: &participant)
        var replayed = Participant(server: "r1")
        for case .persist(let record) in actions {
            replayed.replay(try ReplicaRecord.decode(record.encoded()), nowMs: 0)
        }
        replayed.finishReplay()
        XCTAssertEqual(replayed.fence, MasterFence(epoch: 7, master: "m2"))
        XCTAssertEqual(replayed.stat(nowMs: 0).fenceEpoch, 7)

        var restored = Participant(server: "r1")
        try participant.writeSnapshot(generation: 1) { record in
            try restored.restore(try SnapshotRecord.decode(record.encoded()), nowMs: 0)
        }
        XCTAssertEqual(restored.fence, MasterFence(epoch: 7, master: "m2"))
        XCTAssertEqual(code(send(.abrt(7 * epochSeqs + 1), MasterLink(master: "m1", epoch: 6), to: &restored)), .fenced)
    }

    func testStatReportsTheFenceOnTheWire() throws {
        var participant = Participant(server: "r1")
        _ = send(put(9 * epochSeqs + 1), MasterLink(master: "m3", epoch: 9), to: &participant)
        var answer = WireReply(status: true, code: .ok, message: "ok", seq: 0, server: "r1")
        answer.stat = participant.stat(nowMs: 0)
        let parsed = try WireReply.parse(answer.encoded(), valueExpected: false).get()
        XCTAssertEqual(parsed.stat?.fenceEpoch, 9)
        XCTAssertEqual(parsed.stat?.fenceMaster, "m3")
    }
}
