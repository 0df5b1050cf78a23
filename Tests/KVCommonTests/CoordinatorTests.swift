import KVCommon
import KVTestSupport
import XCTest

final class CoordinatorTests: XCTestCase {
    private typealias Action = Coordinator.Action

    private let replicas = ["r1", "r2", "r3"]
    private let op = WriteOp.put(key: Array("key".utf8), value: Array("value".utf8))
    private let seq: UInt64 = 42

    private func started(_ participants: [String]? = nil) -> Coordinator {
        var coordinator = Coordinator(seq: seq, op: op, participants: participants ?? replicas)
        _ = coordinator.handle(.start)
        return coordinator
    }

    private func yes(_ replica: String, code: ReplyCode = .ok) -> Coordinator.Event {
        .reply(replica: replica, WireReply(status: true, code: code, message: "ok", seq: seq, server: replica))
    }

    private func no(_ replica: String, _ code: ReplyCode) -> Coordinator.Event {
        .reply(replica: replica, WireReply(status: false, code: code, message: "no", seq: seq, server: replica))
    }

    /// The outcome of the single `.finish` in `actions`, failing the test when there is not exactly one.
    private func outcome(_ actions: [Action], file: StaticString = #filePath,
                         line: UInt = #line) -> Coordinator.Outcome? {
        let outcomes = actions.compactMap { action -> Coordinator.Outcome? in
            if case .finish(let outcome) = action { return outcome }
            return nil
        }
        XCTAssertEqual(outcomes.count, 1, "\(actions)", file: file, line: line)
        return outcomes.first
    }

    private func committing() -> Coordinator {
        var coordinator = started()
        for replica in replicas { _ = coordinator.handle(yes(replica)) }
        XCTAssertEqual(coordinator.phase, .deciding)
        _ = coordinator.handle(.decisionDurable)
        XCTAssertEqual(coordinator.phase, .committing)
        return coordinator
    }

    // MARK: - Prepare phase

    func testStartSendsPrepareToEveryParticipant() {
        var coordinator = Coordinator(seq: seq, op: op, participants: replicas)
        XCTAssertEqual(coordinator.handle(.start), replicas.map { .send(replica: $0, .put(seq, op.key,
                                                                                         Array("value".utf8))) })
        XCTAssertEqual(coordinator.phase, .preparing)

        var delete = Coordinator(seq: 7, op: .delete(key: [1]), participants: ["r1"])
        XCTAssertEqual(delete.handle(.start), [.send(replica: "r1", .del(7, [1]))])
    }

    func testAllYesPersistsCommitBeforeSendingCom() {
        var coordinator = started()
        XCTAssertEqual(coordinator.handle(yes("r2")), [])
        XCTAssertEqual(coordinator.handle(yes("r1")), [])
        XCTAssertEqual(coordinator.handle(yes("r3")), [.persist(.commit(seq: seq, participants: replicas))])
        XCTAssertEqual(coordinator.phase, .deciding)
        XCTAssertNil(coordinator.committedOutcome, "nothing may be told before the decision is durable")
        XCTAssertEqual(coordinator.handle(.timeout), [], "no com and no abort while the decision is being written")
        XCTAssertEqual(coordinator.handle(.abortRequested(reason: "late")), [])
        XCTAssertEqual(coordinator.handle(.decisionDurable), [
            .send(replica: "r1", .com(seq)), .send(replica: "r2", .com(seq)), .send(replica: "r3", .com(seq)),
        ])
        XCTAssertEqual(coordinator.phase, .committing)
        XCTAssertEqual(coordinator.committedOutcome?.committed, true)
        XCTAssertEqual(coordinator.committedOutcome?.replicas.map(\.status), [true, true, true])
    }

    func testVetoedDecisionAbortsEverywhereAndNeverCommits() {
        var coordinator = started()
        for replica in replicas { _ = coordinator.handle(yes(replica)) }
        XCTAssertEqual(coordinator.handle(.decisionVetoed(reason: "r2 asked first")),
                       replicas.map { .send(replica: $0, .abrt(seq)) })
        XCTAssertEqual(coordinator.phase, .aborting)
        XCTAssertEqual(coordinator.handle(.decisionDurable), [])
        for replica in replicas.dropLast() { XCTAssertEqual(coordinator.handle(yes(replica)), []) }
        let result = outcome(coordinator.handle(yes("r3")))
        XCTAssertEqual(result?.committed, false)
        XCTAssertEqual(result?.failure, .aborted)
    }

    func testConnectionLostWhileDecidingBecomesPendingCommit() {
        var coordinator = started()
        for replica in replicas { _ = coordinator.handle(yes(replica)) }
        XCTAssertEqual(coordinator.handle(.unreachable(replica: "r3", reason: "connection lost")), [])
        XCTAssertEqual(coordinator.phase, .deciding)
        XCTAssertEqual(coordinator.handle(.decisionDurable).count, 3, "com still goes to every participant")
        _ = coordinator.handle(yes("r1"))
        let actions = coordinator.handle(.unreachable(replica: "r3", reason: "refused"))
            + coordinator.handle(yes("r2"))
        let result = outcome(actions)
        XCTAssertEqual(result?.committed, true)
        XCTAssertEqual(result?.pendingCommit, ["r3"])
        XCTAssertFalse(actions.contains(.persist(.end(seq: seq))))
    }

    func testConflictVoteAbortsEverywhere() {
        var coordinator = started()
        XCTAssertEqual(coordinator.handle(yes("r1")), [])
        XCTAssertEqual(coordinator.handle(no("r2", .conflict)), replicas.map { .send(replica: $0, .abrt(seq)) })
        XCTAssertEqual(coordinator.phase, .aborting)
        XCTAssertEqual(coordinator.handle(yes("r3")), [], "r3's late vote is not an abort ack")
        XCTAssertEqual(coordinator.handle(yes("r1")), [])
        XCTAssertEqual(coordinator.handle(yes("r2")), [])
        let result = outcome(coordinator.handle(yes("r3")))
        XCTAssertEqual(result?.committed, false)
        XCTAssertEqual(result?.failure, .conflict)
        XCTAssertEqual(result?.pendingCommit, [])
        XCTAssertEqual(result?.replicas.map(\.server), replicas)
        XCTAssertEqual(result?.replicas[1].code, .conflict)
        XCTAssertEqual(result?.replicas[1].status, false)
        XCTAssertEqual(result?.replicas[0].message, "prepared, then rolled back (abrt)")
        XCTAssertEqual(coordinator.phase, .finished)
        XCTAssertEqual(coordinator.handle(yes("r3")), [], "finish is reported once")
        XCTAssertEqual(coordinator.handle(.timeout), [])
    }

    func testUnreachableReplicaAbortsWithoutSendingItAbrt() {
        var coordinator = started()
        XCTAssertEqual(coordinator.handle(.unreachable(replica: "r3", reason: "connection refused")),
                       [.send(replica: "r1", .abrt(seq)), .send(replica: "r2", .abrt(seq))])
        XCTAssertEqual(coordinator.handle(.unreachable(replica: "r3", reason: "again")), [])
        for event in [yes("r1"), yes("r2"), yes("r1")] { XCTAssertEqual(coordinator.handle(event), []) }
        let result = outcome(coordinator.handle(yes("r2")))
        XCTAssertEqual(result?.committed, false)
        XCTAssertEqual(result?.failure, .unavailable)
        XCTAssertEqual(result?.replicas[2].message, "connection refused")
        XCTAssertEqual(result?.replicas[2].status, false)
    }

    func testOnlyParticipantUnreachableFinishesAtOnce() {
        var coordinator = started(["r1"])
        let actions = coordinator.handle(.unreachable(replica: "r1", reason: "down"))
        XCTAssertEqual(actions.count, 1)
        XCTAssertEqual(outcome(actions)?.failure, .unavailable)
    }

    func testPrepareTimeoutAborts() {
        var coordinator = started()
        _ = coordinator.handle(yes("r1"))
        XCTAssertEqual(coordinator.handle(.timeout), replicas.map { .send(replica: $0, .abrt(seq)) })
        let result = outcome(coordinator.handle(.timeout))
        XCTAssertEqual(result?.committed, false)
        XCTAssertEqual(result?.failure, .unavailable)
        XCTAssertEqual(result?.replicas.map(\.code), [.ok, .timeout, .timeout])
    }

    /// Yes votes that disagree on the key's created seq mean the replicas differ: abort, naming the odd one.
    func testYesVotesThatDisagreeOnCreatedAbort() {
        var coordinator = started()
        func yes(_ replica: String, created: UInt64) -> Coordinator.Event {
            var reply = WireReply(status: true, code: .ok, message: "prepared", seq: seq, server: replica)
            reply.created = created
            return .reply(replica: replica, reply)
        }
        XCTAssertEqual(coordinator.handle(yes("r1", created: 7)), [])
        XCTAssertEqual(coordinator.agreedCreated, 7)
        XCTAssertEqual(coordinator.handle(yes("r2", created: 7)), [])
        let actions = coordinator.handle(yes("r3", created: seq))
        XCTAssertEqual(coordinator.phase, .aborting)
        XCTAssertEqual(actions, replicas.map { .send(replica: $0, .abrt(seq)) })
        var agreeing = started()
        for replica in replicas { _ = agreeing.handle(yes(replica, created: 7)) }
        XCTAssertEqual(agreeing.phase, .deciding)
    }

    func testNotFoundVote() {
        var coordinator = Coordinator(seq: seq, op: .delete(key: [1]), participants: replicas)
        _ = coordinator.handle(.start)
        XCTAssertEqual(coordinator.handle(no("r1", .notFound)), replicas.map { .send(replica: $0, .abrt(seq)) })
        var last: [Action] = []
        for event in [yes("r1"), no("r2", .notFound), no("r3", .notFound), yes("r2"), yes("r3")] {
            XCTAssertEqual(last, [])
            last = coordinator.handle(event)
        }
        XCTAssertEqual(outcome(last)?.failure, .notFound)
    }

    func testOtherVoteCodesMapToFailures() {
        let cases: [(ReplyCode, Coordinator.Failure)] = [
            (.timeout, .unavailable), (.busy, .unavailable), (.aborted, .aborted), (.badRequest, .aborted),
        ]
        for (code, failure) in cases {
            var coordinator = started(["r1"])
            XCTAssertEqual(coordinator.handle(no("r1", code)), [.send(replica: "r1", .abrt(seq))])
            XCTAssertEqual(outcome(coordinator.handle(yes("r1")))?.failure, failure, "\(code)")
        }
    }

    func testAbortRequestedWhilePreparing() {
        var coordinator = started()
        XCTAssertEqual(coordinator.handle(.abortRequested(reason: "in-doubt resolution")),
                       replicas.map { .send(replica: $0, .abrt(seq)) })
        XCTAssertEqual(coordinator.handle(.abortRequested(reason: "again")), [])
        XCTAssertEqual(coordinator.handle(.timeout).count, 1)
        XCTAssertEqual(coordinator.phase, .finished)
    }

    func testAbortRequestedWhileCommittingIsIgnored() {
        var coordinator = committing()
        XCTAssertEqual(coordinator.handle(.abortRequested(reason: "too late")), [])
        XCTAssertEqual(coordinator.phase, .committing)
    }

    func testRepliesFromStrangersAreIgnored() {
        var coordinator = started()
        XCTAssertEqual(coordinator.handle(yes("r9")), [])
        XCTAssertEqual(coordinator.handle(.unreachable(replica: "r9", reason: "x")), [])
        XCTAssertEqual(coordinator.phase, .preparing)
    }

    // MARK: - Commit phase

    func testAllAcksPersistEndAndFinish() {
        var coordinator = committing()
        XCTAssertEqual(coordinator.handle(yes("r1")), [])
        XCTAssertEqual(coordinator.handle(yes("r3")), [])
        let actions = coordinator.handle(yes("r2"))
        XCTAssertEqual(actions.count, 2)
        XCTAssertEqual(actions.first, .persist(.end(seq: seq)))
        let result = outcome(actions)
        XCTAssertEqual(result?.committed, true)
        XCTAssertNil(result?.failure)
        XCTAssertEqual(result?.pendingCommit, [])
        XCTAssertEqual(result?.replicas.map(\.status), [true, true, true])
        XCTAssertEqual(coordinator.handle(yes("r2")), [])
    }

    func testCommitTimeoutFinishesCommittedWithPendingReplicas() {
        var coordinator = committing()
        _ = coordinator.handle(yes("r2"))
        let actions = coordinator.handle(.timeout)
        XCTAssertEqual(actions.count, 1, "no END record while acks are missing")
        let result = outcome(actions)
        XCTAssertEqual(result?.committed, true)
        XCTAssertEqual(result?.pendingCommit, ["r1", "r3"])
        XCTAssertEqual(result?.replicas.map(\.code), [.timeout, .ok, .timeout])
    }

    func testUnreachableDuringCommitLeavesItPending() {
        var coordinator = committing()
        XCTAssertEqual(coordinator.handle(.unreachable(replica: "r2", reason: "reset")), [])
        XCTAssertEqual(coordinator.handle(yes("r1")), [])
        let actions = coordinator.handle(yes("r3"))
        XCTAssertEqual(actions.count, 1)
        let result = outcome(actions)
        XCTAssertEqual(result?.committed, true)
        XCTAssertEqual(result?.pendingCommit, ["r2"])
        XCTAssertEqual(result?.replicas[1].status, false)
    }

    func testNegativeCommitAckLeavesReplicaPending() {
        var coordinator = committing()
        _ = coordinator.handle(yes("r1"))
        _ = coordinator.handle(yes("r2"))
        let result = outcome(coordinator.handle(no("r3", .unknownTransaction)))
        XCTAssertEqual(result?.committed, true)
        XCTAssertEqual(result?.pendingCommit, ["r3"])
        XCTAssertEqual(result?.replicas[2].code, .unknownTransaction)
    }

    // MARK: - Safety under random schedules

    func testNeverCommitsAfterANoAndPersistsBeforeCom() {
        var random = SplitMix64(seed: 0xC0FFEE)
        var commits = 0
        for _ in 0..<3000 {
            var coordinator = started()
            var negative = false
            var persistedCommit = false
            var durable = false
            var sentAbort = false
            var finished = 0
            for _ in 0..<Int.random(in: 1...12, using: &random) {
                let replica = replicas[Int.random(in: 0..<3, using: &random)]
                let event: Coordinator.Event
                switch Int.random(in: 0..<10, using: &random) {
                case 0: event = no(replica, .conflict)
                case 1: event = .unreachable(replica: replica, reason: "x")
                case 2: event = .timeout
                case 3: event = .abortRequested(reason: "x")
                case 4 where coordinator.phase == .deciding:
                    event = .decisionDurable
                    durable = true
                case 5 where coordinator.phase == .deciding:
                    event = .decisionVetoed(reason: "x")
                    negative = true
                default: event = yes(replica)
                }
                let wasPreparing = coordinator.phase == .preparing
                let actions = coordinator.handle(event)
                if wasPreparing && event != yes(replica) && !(coordinator.phase == .preparing && actions.isEmpty)
                    && event != .decisionDurable {
                    negative = true
                }
                for action in actions {
                    switch action {
                    case .persist(.commit):
                        XCTAssertFalse(negative, "commit after a negative event")
                        XCTAssertFalse(sentAbort, "commit after an abrt")
                        persistedCommit = true
                        commits += 1
                    case .send(_, let request) where request.command == .com:
                        XCTAssertTrue(persistedCommit && durable, "com before the commit record is durable")
                    case .send(_, let request) where request.command == .abrt:
                        XCTAssertFalse(durable, "abrt after a durable commit")
                        sentAbort = true
                    case .finish(let result):
                        finished += 1
                        XCTAssertEqual(result.committed, durable)
                    default:
                        break
                    }
                }
            }
            XCTAssertLessThanOrEqual(finished, 1)
        }
        XCTAssertGreaterThan(commits, 0, "the random schedules must exercise commits too")
    }
}
