@testable import KVCommon
import KVTestSupport
import XCTest

final class ParticipantTests: XCTestCase {
    private typealias Action = Participant.Action

    private let key = Array("key".utf8)
    private let other = Array("other".utf8)
    private var nextID: Participant.RequestID = 0

    /// Sends `request` with a fresh request id; returns the actions with reply messages blanked
    /// (messages are human text; everything else is compared exactly).
    private func send(_ request: WireRequest, to participant: inout Participant, nowMs: UInt64 = 0,
                      id: Participant.RequestID? = nil) -> [Action] {
        nextID += 1
        return strip(participant.handle(.request(request, id ?? nextID, nowMs: nowMs)))
    }

    private func strip(_ actions: [Action]) -> [Action] {
        actions.map { action in
            guard case .reply(let id, var reply) = action else { return action }
            reply.message = ""
            return .reply(id, reply)
        }
    }

    private func reply(_ id: Participant.RequestID, _ status: Bool, _ code: ReplyCode, seq: UInt64? = nil,
                       value: [UInt8]? = nil, created: UInt64? = nil) -> Action {
        var answer = WireReply(status: status, code: code, message: "", seq: seq, server: "r1", value: value)
        answer.created = created
        return .reply(id, answer)
    }

    private func committed(_ participant: inout Participant, seq: UInt64, _ op: WriteOp) {
        XCTAssertEqual(send(op.prepareRequest(seq: seq), to: &participant).first, .persist(.prepare(seq: seq, op: op)))
        XCTAssertEqual(send(.com(seq), to: &participant).first, .persist(.commit(seq: seq)))
    }

    // MARK: - Prepare

    func testPrepareOnFreeKeyPersistsThenVotesYes() {
        var participant = Participant(server: "r1")
        let actions = send(.put(1, key, Array("v".utf8)), to: &participant)
        XCTAssertEqual(actions, [.persist(.prepare(seq: 1, op: .put(key: key, value: Array("v".utf8)))),
                                 reply(nextID, true, .ok, seq: 1, created: 1)])
        XCTAssertEqual(participant.lockHolder(of: key), 1)
        XCTAssertEqual(participant.inDoubt, [1])
        XCTAssertNil(participant.store[key], "a prepared value is not visible before commit")
    }

    /// A key's version is the seq that last wrote it, so it must only grow in commit order: a prepare that reaches
    /// a replica after a higher seq already committed on its key (a delayed or reordered message, a master that
    /// lost its log) is refused; voting yes would let its commit take the version back, and an If-Match on the
    /// older version match again. A txn whose branch writes such a key is refused the same way.
    func testPrepareWithSeqBelowTheKeysVersionIsRefusedSoVersionsNeverGoBack() {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 10, .put(key: key, value: [1]))
        XCTAssertEqual(send(.put(8, key, [2]), to: &participant), [reply(nextID, false, .superseded, seq: 8)])
        XCTAssertEqual(send(.del(9, key), to: &participant), [reply(nextID, false, .superseded, seq: 9)])
        let spec = TxnSpec(compare: [], success: [.put(key: other, value: [3]), .put(key: key, value: [4])], failure: [])
        XCTAssertEqual(send(WireRequest(seq: 7, command: .txn, value: spec.wireJSON()), to: &participant),
                       [reply(nextID, false, .superseded, seq: 7)])
        XCTAssertNil(participant.lockHolder(of: key))
        XCTAssertNil(participant.lockHolder(of: other), "a refused txn locks none of its keys")
        XCTAssertEqual(participant.store[key]?.version, 10)
        XCTAssertEqual(participant.store[key]?.value, [1])
        // Refused is aborted: a late com for the refused seq cannot apply it.
        XCTAssertEqual(send(.abrt(8), to: &participant), [reply(nextID, true, .ok, seq: 8)])
        // A txn that only reads the key at a lower seq changes no version and still prepares.
        let read = TxnSpec(compare: [], success: [.get(key: key), .put(key: other, value: [5])], failure: [])
        guard case .reply(_, let vote) = send(WireRequest(seq: 6, command: .txn, value: read.wireJSON()),
                                              to: &participant).last else { return XCTFail("no vote") }
        XCTAssertTrue(vote.status)
        // A higher seq writes as ever.
        _ = send(.abrt(6), to: &participant)
        committed(&participant, seq: 11, .put(key: key, value: [6]))
        XCTAssertEqual(participant.store[key]?.version, 11)
    }

    func testPrepareOnLockedKeyVotesConflictWithoutPersisting() {
        var participant = Participant(server: "r1")
        _ = send(.put(1, key, Array("a".utf8)), to: &participant)
        XCTAssertEqual(send(.put(2, key, Array("b".utf8)), to: &participant), [reply(nextID, false, .conflict, seq: 2)])
        XCTAssertEqual(send(.del(3, key), to: &participant), [reply(nextID, false, .conflict, seq: 3)])
        XCTAssertEqual(participant.lockHolder(of: key), 1)
        XCTAssertEqual(participant.inDoubt, [1])
        // The loser is remembered as aborted: its abrt is acknowledged without a new record.
        XCTAssertEqual(send(.abrt(2), to: &participant), [reply(nextID, true, .ok, seq: 2)])
    }

    /// A yes vote says the key's created seq: the put's own for a new key, the original one for an existing key
    /// (after the put) and for a del (before it); a txn's vote lists it for each write of its branch, 0 for a del
    /// of an absent key (the watch history's `created` comes from these).
    func testYesVotesReportTheCreatedSeqOfWhatTheyWrite() {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 3, .put(key: key, value: [1]))
        guard case .reply(_, let overwrite) = send(.put(5, key, [2]), to: &participant).last else { return XCTFail() }
        XCTAssertEqual(overwrite.created, 3)
        _ = send(.abrt(5), to: &participant)
        guard case .reply(_, let delete) = send(.del(6, key), to: &participant).last else { return XCTFail() }
        XCTAssertEqual(delete.created, 3)
        _ = send(.abrt(6), to: &participant)
        let spec = TxnSpec(compare: [], success: [.put(key: other, value: [9]), .delete(key: Array("absent".utf8)),
                                                  .get(key: key), .delete(key: key)], failure: [])
        guard case .reply(_, let vote) = send(WireRequest(seq: 8, command: .txn, value: spec.wireJSON()),
                                              to: &participant).last else { return XCTFail() }
        XCTAssertEqual(vote.txn?.writeCreated, [8, 0, 3])
        XCTAssertNil(vote.created)
        // And on the wire, both ways.
        XCTAssertEqual(try WireReply.parse(vote.encoded(), valueExpected: false).get().txn?.writeCreated, [8, 0, 3])
        XCTAssertEqual(try WireReply.parse(overwrite.encoded(), valueExpected: false).get().created, 3)
    }

    func testDeleteOfMissingKeyVotesNotFound() {
        var participant = Participant(server: "r1")
        XCTAssertEqual(send(.del(4, key), to: &participant), [reply(nextID, false, .notFound, seq: 4)])
        XCTAssertNil(participant.lockHolder(of: key))
        XCTAssertEqual(participant.inDoubt, [])
    }

    /// A duplicate prepare (on another connection, say) gets the same yes, but only once the first PREPARE is
    /// durable: its reply is held behind the records already queued, as the first one's is.
    func testDuplicatePrepareIsIdempotentAndWaitsForTheFirstRecord() {
        var participant = Participant(server: "r1")
        _ = send(.put(1, key, Array("a".utf8)), to: &participant)
        XCTAssertEqual(send(.put(1, key, Array("a".utf8)), to: &participant),
                       [.awaitDurable, reply(nextID, true, .ok, seq: 1)])
        XCTAssertEqual(send(.put(1, key, Array("b".utf8)), to: &participant), [reply(nextID, false, .conflict, seq: 1)])
        _ = send(.com(1), to: &participant)
        // Also once committed: the yes must not overtake the PREPARE and COMMIT records still queued.
        XCTAssertEqual(send(.put(1, key, Array("a".utf8)), to: &participant),
                       [.awaitDurable, reply(nextID, true, .ok, seq: 1)])
    }

    // MARK: - Commit and abort

    func testCommitPersistsRepliesAndApplies() {
        var participant = Participant(server: "r1")
        _ = send(.put(5, key, Array("v1".utf8)), to: &participant)
        XCTAssertEqual(send(.com(5), to: &participant), [.persist(.commit(seq: 5)), reply(nextID, true, .ok, seq: 5)])
        XCTAssertEqual(participant.store[key], Participant.Entry(value: Array("v1".utf8), version: 5, created: 5))
        XCTAssertNil(participant.lockHolder(of: key))
        XCTAssertEqual(participant.lastCommittedSeq, 5)
        XCTAssertEqual(participant.inDoubt, [])

        committed(&participant, seq: 9, .put(key: key, value: Array("v2".utf8)))
        XCTAssertEqual(participant.store[key], Participant.Entry(value: Array("v2".utf8), version: 9, created: 5))
        XCTAssertEqual(send(.get(key), to: &participant), [reply(nextID, true, .ok, seq: 9, value: Array("v2".utf8),
                                                                          created: 5)])

        committed(&participant, seq: 12, .delete(key: key))
        XCTAssertNil(participant.store[key])
        XCTAssertEqual(send(.get(key), to: &participant), [reply(nextID, false, .notFound)])
        XCTAssertEqual(participant.lastCommittedSeq, 12)
    }

    func testDuplicateCommitAndAbortAreIdempotent() {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 1, .put(key: key, value: [1]))
        XCTAssertEqual(send(.com(1), to: &participant), [.persist(.commit(seq: 1)), reply(nextID, true, .ok, seq: 1)])
        XCTAssertEqual(send(.com(1), to: &participant), [.persist(.commit(seq: 1)), reply(nextID, true, .ok, seq: 1)])
        XCTAssertEqual(send(.abrt(1), to: &participant), [reply(nextID, false, .conflict, seq: 1)])

        _ = send(.put(2, other, [2]), to: &participant)
        XCTAssertEqual(send(.abrt(2), to: &participant), [.persist(.abort(seq: 2)), reply(nextID, true, .ok, seq: 2)])
        XCTAssertEqual(send(.abrt(2), to: &participant), [reply(nextID, true, .ok, seq: 2)])
        XCTAssertEqual(send(.com(2), to: &participant), [reply(nextID, false, .aborted, seq: 2)])
        XCTAssertEqual(participant.store[key]?.value, [1])
        XCTAssertNil(participant.store[other])
    }

    func testAbortReleasesTheLock() {
        var participant = Participant(server: "r1")
        _ = send(.put(1, key, [1]), to: &participant)
        XCTAssertEqual(send(.abrt(1), to: &participant), [.persist(.abort(seq: 1)), reply(nextID, true, .ok, seq: 1)])
        XCTAssertNil(participant.lockHolder(of: key))
        XCTAssertEqual(participant.inDoubt, [])
        XCTAssertNil(participant.store[key])
        XCTAssertEqual(send(.put(2, key, [2]), to: &participant).first, .persist(.prepare(seq: 2, op: .put(key: key,
                                                                                                        value: [2]))))
    }

    func testLatePrepareAfterAbortVotesNo() {
        var participant = Participant(server: "r1")
        _ = send(.put(1, key, [1]), to: &participant)
        _ = send(.abrt(1), to: &participant)
        XCTAssertEqual(send(.put(1, key, [1]), to: &participant), [reply(nextID, false, .aborted, seq: 1)])
        XCTAssertNil(participant.lockHolder(of: key))
    }

    func testAbortOfUnknownSeqIsRememberedDurably() {
        var participant = Participant(server: "r1")
        XCTAssertEqual(send(.abrt(9), to: &participant), [.persist(.abort(seq: 9)), reply(nextID, true, .ok, seq: 9)])
        XCTAssertEqual(send(.put(9, key, [1]), to: &participant), [reply(nextID, false, .aborted, seq: 9)])
        XCTAssertNil(participant.lockHolder(of: key))
        XCTAssertEqual(send(.com(9), to: &participant), [reply(nextID, false, .aborted, seq: 9)])
    }

    func testCommitOfUnknownSeq() {
        var participant = Participant(server: "r1")
        XCTAssertEqual(send(.com(3), to: &participant), [reply(nextID, false, .unknownTransaction, seq: 3)])
    }

    // MARK: - Reads

    func testReadOfLockedKeyWaitsForTheCommit() {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 1, .put(key: key, value: Array("old".utf8)))
        _ = send(.put(2, key, Array("new".utf8)), to: &participant)
        XCTAssertEqual(send(.get(key), to: &participant, id: 100), [.awaitDecision(100)])
        XCTAssertEqual(send(.get(key), to: &participant, id: 101), [.awaitDecision(101)])
        XCTAssertEqual(send(.get(other), to: &participant, id: 102), [reply(102, false, .notFound)])
        XCTAssertEqual(send(.com(2), to: &participant, id: 200), [
            .persist(.commit(seq: 2)), reply(200, true, .ok, seq: 2),
            reply(100, true, .ok, seq: 2, value: Array("new".utf8), created: 1),
            reply(101, true, .ok, seq: 2, value: Array("new".utf8), created: 1),
        ])
        XCTAssertEqual(participant.handle(.readTimedOut(100)), [], "an answered read cannot time out")
    }

    func testReadOfLockedKeyAfterAbortSeesTheOldValue() {
        var participant = Participant(server: "r1")
        _ = send(.put(2, key, Array("new".utf8)), to: &participant)
        XCTAssertEqual(send(.get(key), to: &participant, id: 100), [.awaitDecision(100)])
        XCTAssertEqual(send(.abrt(2), to: &participant, id: 200), [
            .persist(.abort(seq: 2)), reply(200, true, .ok, seq: 2), reply(100, false, .notFound),
        ])
    }

    func testParkedReadTimesOut() {
        var participant = Participant(server: "r1")
        _ = send(.put(2, key, [1]), to: &participant)
        XCTAssertEqual(send(.get(key), to: &participant, id: 100), [.awaitDecision(100)])
        let actions = participant.handle(.readTimedOut(100))
        XCTAssertEqual(strip(actions), [reply(100, false, .timeout)])
        if case .reply(_, let answer) = actions.first { XCTAssertTrue(answer.message.contains("2"), answer.message) }
        XCTAssertEqual(participant.handle(.readTimedOut(100)), [], "a read times out once")
        XCTAssertEqual(participant.handle(.readTimedOut(12_345)), [], "unknown reads are ignored")
        XCTAssertEqual(send(.com(2), to: &participant, id: 200), [.persist(.commit(seq: 2)),
                                                                  reply(200, true, .ok, seq: 2)])
    }

    // MARK: - Replay

    func testReplayRebuildsStoreLocksAndInDoubt() {
        var participant = Participant(server: "r1")
        let records: [ReplicaRecord] = [
            .prepare(seq: 1, op: .put(key: key, value: Array("a".utf8))), .commit(seq: 1),
            .prepare(seq: 2, op: .put(key: other, value: Array("b".utf8))), .abort(seq: 2),
            .prepare(seq: 3, op: .put(key: key, value: Array("c".utf8))), .commit(seq: 3),
            .prepare(seq: 4, op: .put(key: other, value: Array("d".utf8))),
            .abort(seq: 6),
        ]
        for record in records { participant.replay(record, nowMs: 1_000) }
        XCTAssertEqual(participant.store, [key: Participant.Entry(value: Array("c".utf8), version: 3, created: 1)])
        XCTAssertEqual(participant.lastCommittedSeq, 3)
        XCTAssertEqual(participant.inDoubt, [4])
        XCTAssertEqual(participant.lockHolder(of: other), 4)
        XCTAssertNil(participant.lockHolder(of: key))
        XCTAssertEqual(participant.stat(nowMs: 1_250).inDoubt, [.init(seq: 4, ageMs: 250, recovered: true)])

        XCTAssertEqual(send(.put(7, other, [1]), to: &participant), [reply(nextID, false, .conflict, seq: 7)])
        XCTAssertEqual(send(.put(2, other, [1]), to: &participant), [reply(nextID, false, .aborted, seq: 2)])
        XCTAssertEqual(send(.put(6, other, [1]), to: &participant), [reply(nextID, false, .aborted, seq: 6)])
        XCTAssertEqual(send(.com(1), to: &participant), [.persist(.commit(seq: 1)), reply(nextID, true, .ok, seq: 1)])
        XCTAssertEqual(send(.com(4), to: &participant), [.persist(.commit(seq: 4)), reply(nextID, true, .ok, seq: 4)])
        XCTAssertEqual(participant.store[other]?.value, Array("d".utf8))
        XCTAssertEqual(participant.inDoubt, [])
    }

    func testReplayMatchesLiveState() {
        var live = Participant(server: "r1")
        var log: [ReplicaRecord] = []
        var random = SplitMix64(seed: 2024)
        let keys = (0..<5).map { Array("k\($0)".utf8) }
        for seq in UInt64(1)...300 {
            let target = keys[Int.random(in: 0..<keys.count, using: &random)]
            let op: WriteOp = Bool.random(using: &random) ? .put(key: target, value: random.bytes(count: 3))
                : .delete(key: target)
            var actions = send(op.prepareRequest(seq: seq), to: &live)
            if let decide = live.inDoubt.first,
               live.inDoubt.count > 1 || Int.random(in: 0..<3, using: &random) > 0 {
                actions += send(Bool.random(using: &random) ? .com(decide) : .abrt(decide), to: &live)
            }
            for case .persist(let record) in actions { log.append(record) }
        }
        var restored = Participant(server: "r1")
        for record in log { restored.replay(record, nowMs: 0) }
        XCTAssertEqual(restored.store, live.store)
        XCTAssertEqual(restored.digest, live.digest)
        XCTAssertEqual(restored.lastCommittedSeq, live.lastCommittedSeq)
        XCTAssertEqual(restored.inDoubt, live.inDoubt)
        XCTAssertGreaterThan(live.store.count, 0)
        assertDigestIsTheSumOfItsEntries(live)
        assertDigestIsTheSumOfItsEntries(restored)
    }

    /// The digest is kept incrementally with each entry's cached term; it must equal the sum computed afresh.
    private func assertDigestIsTheSumOfItsEntries(_ participant: Participant, file: StaticString = #filePath,
                                                  line: UInt = #line) {
        var sum: UInt64 = 0, withoutCreated: UInt64 = 0
        for (key, entry) in participant.store {
            let hash = ContentDigest.entryHash(key: key, value: entry.value, version: entry.version)
            XCTAssertEqual(entry.entryHash, hash, "cached hash of \(key)", file: file, line: line)
            sum &+= ContentDigest.term(entryHash: hash, created: entry.created)
            withoutCreated &+= hash
        }
        XCTAssertEqual(participant.digest, sum, file: file, line: line)
        XCTAssertEqual(participant.digestWithoutCreated, withoutCreated, file: file, line: line)
    }

    func testStateTransferLoadsAndDropsKeepTheDigest() {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 1, .put(key: key, value: [1]))
        participant.applySync(.load(key: key, value: [7, 7], version: 5, created: 1))
        participant.applySync(.load(key: other, value: [8], version: 6, created: 6))
        assertDigestIsTheSumOfItsEntries(participant)
        participant.applySync(.drop(key: key))
        assertDigestIsTheSumOfItsEntries(participant)
        XCTAssertEqual(participant.store.count, 1)
        participant.applySync(.drop(key: other))
        XCTAssertEqual(participant.digest, 0)
    }

    // MARK: - Digest and stat

    func testDigestIsOrderIndependent() {
        var first = Participant(server: "r1")
        var second = Participant(server: "r2")
        let writes: [(UInt64, [UInt8], [UInt8])] = [(1, key, [1]), (2, other, [2]), (3, Array("third".utf8), [3])]
        for (seq, key, value) in writes { committed(&first, seq: seq, .put(key: key, value: value)) }
        for (seq, key, value) in writes.reversed() { committed(&second, seq: seq, .put(key: key, value: value)) }
        XCTAssertEqual(first.digest, second.digest)
        XCTAssertNotEqual(first.digest, 0)

        var third = Participant(server: "r1")
        for (seq, key, value) in writes {
            committed(&third, seq: seq, .put(key: key, value: value == [2] ? [9] : value))
        }
        XCTAssertNotEqual(third.digest, first.digest)

        var fourth = Participant(server: "r4")
        for (seq, key, value) in writes { committed(&fourth, seq: seq + 10, .put(key: key, value: value)) }
        XCTAssertNotEqual(fourth.digest, first.digest, "the version is part of the digest")
    }

    /// Two replicas that agree on every value and version but not on when a key was created differ: `created`
    /// is answered to clients (and compared by txns), so the digest that verify and state transfer compare
    /// must cover it.
    func testCreatedIsPartOfTheDigest() {
        var first = Participant(server: "r1")
        var second = Participant(server: "r2")
        first.setEntry(key, value: [1], version: 9, created: 3)
        second.setEntry(key, value: [1], version: 9, created: 5)
        XCTAssertNotEqual(first.digest, second.digest)
        second.setEntry(key, value: [1], version: 9, created: 3)
        XCTAssertEqual(first.digest, second.digest, "replacing an entry takes its old term out")
    }

    /// A snapshot written before `created` was in the digest ends with the old trailer (type 5): it still loads,
    /// checked against the digest without `created`; a new snapshot's trailer carries the full one.
    func testASnapshotWithTheTrailerOfAnEarlierVersionStillLoads() throws {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 1, .put(key: key, value: [1]))
        committed(&participant, seq: 2, .put(key: other, value: [2]))
        var records: [SnapshotRecord] = []
        participant.writeSnapshot(generation: 1) { records.append(SnapshotRecord.decodeRoundTrip($0)) }
        guard case .trailer(let entries, let prepared, let decided, _) = records.removeLast() else {
            return XCTFail("no trailer")
        }
        let withoutCreated = [key, other].reduce(UInt64(0)) { sum, name in
            let entry = participant.store[name]!
            return sum &+ ContentDigest.entryHash(key: name, value: entry.value, version: entry.version)
        }
        var legacy = SnapshotRecord.trailerWithoutCreated(entries: entries, prepared: prepared, decided: decided,
                                                          digest: withoutCreated)
        legacy = SnapshotRecord.decodeRoundTrip(legacy)
        var restored = Participant(server: "r1")
        for record in records + [legacy] { try restored.restore(record, nowMs: 0) }
        XCTAssertEqual(restored.digest, participant.digest)
        var damaged = Participant(server: "r1")
        for record in records { try damaged.restore(record, nowMs: 0) }
        XCTAssertThrowsError(try damaged.restore(.trailerWithoutCreated(entries: entries, prepared: prepared,
                                                                        decided: decided, digest: withoutCreated &+ 1),
                                                 nowMs: 0))
    }

    func testDigestReturnsToZeroWhenEverythingIsDeleted() {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 1, .put(key: key, value: [1]))
        committed(&participant, seq: 2, .put(key: key, value: [2]))
        committed(&participant, seq: 3, .delete(key: key))
        XCTAssertEqual(participant.digest, 0)
        XCTAssertEqual(participant.store.count, 0)
    }

    func testStatReportsKeysSeqAndInDoubtAges() {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 1, .put(key: key, value: [1]))
        _ = send(.put(3, other, [3]), to: &participant, nowMs: 1_000)
        _ = send(.put(2, Array("x".utf8), [2]), to: &participant, nowMs: 1_400)
        var expected = ReplicaStat(keys: 1, digest: participant.digest, lastCommittedSeq: 1,
                                   inDoubt: [.init(seq: 2, ageMs: 600), .init(seq: 3, ageMs: 1_000)])
        expected.maxSeq = 3  // the highest seq it knows, prepared ones included
        XCTAssertEqual(participant.stat(nowMs: 2_000), expected)
        XCTAssertEqual(participant.stat(nowMs: 500).inDoubt.map(\.ageMs), [0, 0], "a clock behind never underflows")
        var answer = WireReply(status: true, code: .ok, message: "", seq: 1, server: "r1")
        answer.stat = expected
        XCTAssertEqual(send(.stat, to: &participant, nowMs: 2_000, id: 77), [.reply(77, answer)])
    }

    // MARK: - Outcome queries (qry)

    func testQueryAnswersFromWhatTheReplicaKnows() {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 1, .put(key: key, value: [1]))
        _ = send(.put(2, other, [2]), to: &participant)
        XCTAssertEqual(send(WireRequest(seq: 1, command: .qry), to: &participant), [reply(nextID, true, .committed, seq: 1)])
        XCTAssertEqual(send(WireRequest(seq: 2, command: .qry), to: &participant), [reply(nextID, true, .inDoubt, seq: 2)])
        _ = send(.abrt(2), to: &participant)
        XCTAssertEqual(send(WireRequest(seq: 2, command: .qry), to: &participant), [reply(nextID, true, .aborted, seq: 2)])
    }

    func testQueryForUnknownSeqRecordsAbortSoALatePrepareVotesNo() {
        var participant = Participant(server: "r1")
        XCTAssertEqual(send(WireRequest(seq: 9, command: .qry), to: &participant),
                       [.persist(.abort(seq: 9)), reply(nextID, true, .aborted, seq: 9)])
        XCTAssertEqual(send(.put(9, key, [1]), to: &participant), [reply(nextID, false, .aborted, seq: 9)])
        XCTAssertNil(participant.lockHolder(of: key))
    }

    func testForgottenSeqsAreNeitherClaimedAbortedNorPrepared() {
        var participant = Participant(server: "r1", decisionMemory: 2)
        for seq: UInt64 in 10...13 { _ = send(.abrt(seq), to: &participant) }
        // 10 and 11 were evicted: nothing can be claimed about 5 or 11 any more.
        XCTAssertEqual(send(WireRequest(seq: 5, command: .qry), to: &participant),
                       [reply(nextID, false, .unknownTransaction, seq: 5)])
        XCTAssertEqual(send(.put(11, key, [1]), to: &participant), [reply(nextID, false, .aborted, seq: 11)])
        XCTAssertEqual(send(.put(14, key, [1]), to: &participant).first, .persist(.prepare(seq: 14, op: .put(key: key,
                                                                                                       value: [1]))))
    }

    /// A seq that committed here is voted for again only by a duplicate of the same operation: a prepare that
    /// reuses it for another one (a master that lost its decision log) must not hear "already committed", or its
    /// write would be acknowledged and applied nowhere. The fingerprint survives a restart and a snapshot.
    func testASeqReusedForAnotherOperationIsRefusedAfterItCommitted() throws {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 5, .put(key: key, value: Array("first".utf8)))
        XCTAssertEqual(send(.put(5, key, Array("second".utf8)), to: &participant), [reply(nextID, false, .aborted, seq: 5)])
        XCTAssertEqual(send(.del(5, key), to: &participant), [reply(nextID, false, .aborted, seq: 5)])
        XCTAssertEqual(send(.put(5, key, Array("first".utf8)), to: &participant),
                       [.awaitDurable, reply(nextID, true, .ok, seq: 5)])
        XCTAssertEqual(participant.store[key]?.value, Array("first".utf8))
        var replayed = Participant(server: "r1")
        for record in [ReplicaRecord.prepare(seq: 5, op: .put(key: key, value: Array("first".utf8))), .commit(seq: 5)] {
            replayed.replay(record, nowMs: 0)
        }
        var records: [SnapshotRecord] = []
        replayed.writeSnapshot(generation: 2) { records.append(SnapshotRecord.decodeRoundTrip($0)) }
        var restored = Participant(server: "r1")
        for record in records { try restored.restore(record, nowMs: 0) }
        for var copy in [replayed, restored] {
            XCTAssertEqual(send(.put(5, key, Array("second".utf8)), to: &copy), [reply(nextID, false, .aborted, seq: 5)])
            XCTAssertEqual(send(.put(5, key, Array("first".utf8)), to: &copy), [.awaitDurable, reply(nextID, true, .ok, seq: 5)])
        }
    }

    // MARK: - Who may claim "never prepared"

    /// A replica that is not in sync (a new or wiped disk, a transfer under way) cannot know whether it voted for a
    /// seq: it says so, records nothing, and a later prepare is still refused for being out of sync.
    func testAnOutOfSyncReplicaNeverClaimsNeverPrepared() {
        var participant = Participant(server: "r1")
        participant.finishReplay()  // nothing on disk: out of sync
        XCTAssertFalse(participant.joined)
        XCTAssertEqual(send(WireRequest(seq: 9, command: .qry), to: &participant), [reply(nextID, false, .notSynced, seq: 9)])
        _ = send(WireRequest(seq: nil, command: .reset), to: &participant)
        XCTAssertEqual(send(WireRequest(seq: 9, command: .qry), to: &participant), [reply(nextID, false, .notSynced, seq: 9)])
    }

    /// After a state transfer a replica joins at a seq: it took no part in anything at or below it, so it cannot
    /// vouch that those never prepared (they may have committed while it was out of sync); above it, it can.
    func testAReplicaThatJoinedCannotVouchForSeqsBeforeItsJoin() {
        var participant = Participant(server: "r1")
        _ = send(WireRequest(seq: nil, command: .reset), to: &participant)
        XCTAssertEqual(send(WireRequest(seq: 1000, command: .join), to: &participant),
                       [.persist(.join(since: 1000)), reply(nextID, true, .ok, seq: 1000)])
        XCTAssertEqual(send(WireRequest(seq: 1000, command: .qry), to: &participant),
                       [reply(nextID, false, .unknownTransaction, seq: 1000)])
        XCTAssertEqual(send(WireRequest(seq: 1001, command: .qry), to: &participant),
                       [.persist(.abort(seq: 1001)), reply(nextID, true, .aborted, seq: 1001)])
        // The join point survives a restart: by replay and by snapshot.
        var replayed = Participant(server: "r1")
        for record in [ReplicaRecord.reset(), .join(since: 1000)] { replayed.replay(record, nowMs: 0) }
        replayed.finishReplay()
        XCTAssertEqual(replayed.joinedSince, 1000)
        var records: [SnapshotRecord] = []
        participant.writeSnapshot(generation: 2) { records.append(SnapshotRecord.decodeRoundTrip($0)) }
        var restored = Participant(server: "r1")
        for record in records { try? restored.restore(record, nowMs: 0) }
        XCTAssertEqual(restored.joinedSince, 1000)
    }

    /// A transfer's `join` names the transfer whose `reset` began it: a target that restarted empty since (a new
    /// disk) or was reset by another transfer refuses it, so it never joins without the data it was sent.
    func testAJoinEndsOnlyTheTransferThatResetTheReplica() {
        var participant = Participant(server: "r1")
        XCTAssertEqual(send(WireRequest(seq: 7, command: .reset), to: &participant).first, .persist(.reset(transfer: 7)))
        XCTAssertEqual(send(WireRequest(seq: 9, command: .join, value: Array("8".utf8)), to: &participant),
                       [reply(nextID, false, .badRequest)])
        XCTAssertFalse(participant.joined)
        var wiped = Participant(server: "r1")
        wiped.finishReplay()
        XCTAssertEqual(send(WireRequest(seq: 9, command: .join, value: Array("7".utf8)), to: &wiped),
                       [reply(nextID, false, .badRequest)])
        var restarted = Participant(server: "r1")
        restarted.replay(.reset(transfer: 7), nowMs: 0)
        restarted.finishReplay()
        XCTAssertEqual(send(WireRequest(seq: 9, command: .join, value: Array("7".utf8)), to: &restarted),
                       [.persist(.join(since: 9)), reply(nextID, true, .ok, seq: 9)])
    }

    /// A large transfer loads enough for the replica to snapshot before it joins: the transfer that reset it is
    /// kept in the snapshot, or every such transfer would fail at its join and start over, forever.
    func testTheResettingTransferSurvivesASnapshot() throws {
        var participant = Participant(server: "r1")
        _ = send(WireRequest(seq: 7, command: .reset), to: &participant)
        _ = send(WireRequest(seq: 3, command: .load, key: key, value: Array("1:x".utf8)), to: &participant)
        var records: [SnapshotRecord] = []
        participant.writeSnapshot(generation: 2) { records.append(SnapshotRecord.decodeRoundTrip($0)) }
        var restored = Participant(server: "r1")
        for record in records { try restored.restore(record, nowMs: 0) }
        restored.finishReplay()
        XCTAssertEqual(send(WireRequest(seq: 9, command: .join, value: Array("7".utf8)), to: &restored),
                       [.persist(.join(since: 9)), reply(nextID, true, .ok, seq: 9)])
    }

    /// The participants the master announces are recorded with every prepare (and come back with it after a
    /// restart), so an in-doubt replica asks exactly the transaction's participants.
    func testPreparesRecordTheAnnouncedParticipants() {
        var participant = Participant(server: "r1")
        let members = [Member(id: "r1", host: "h1", port: 1), Member(id: "r2", host: "h2", port: 2)]
        XCTAssertEqual(send(WireRequest(seq: 3, command: .memb, value: Member.encode(members)), to: &participant),
                       [reply(nextID, true, .ok, seq: 3)])
        let op = WriteOp.put(key: key, value: [1])
        XCTAssertEqual(send(op.prepareRequest(seq: 7), to: &participant).first,
                       .persist(.prepare(seq: 7, op: op, members: members)))
        XCTAssertEqual(participant.stat(nowMs: 0).inDoubt.first?.members, members)
        // A duplicate of the same write is the same prepare, whatever was announced since.
        _ = send(WireRequest(seq: 4, command: .memb, value: Member.encode([members[0]])), to: &participant)
        XCTAssertEqual(send(op.prepareRequest(seq: 7), to: &participant), [.awaitDurable, reply(nextID, true, .ok, seq: 7)])
        var replayed = Participant(server: "r1")
        replayed.replay(try! ReplicaRecord.decode(ReplicaRecord.prepare(seq: 7, op: op, members: members).encoded()),
                        nowMs: 0)
        XCTAssertEqual(replayed.stat(nowMs: 0).inDoubt.first?.members, members)
        XCTAssertEqual(send(WireRequest(seq: 5, command: .memb, value: Array("r1@nohost".utf8)), to: &participant),
                       [reply(nextID, false, .badRequest)])
    }

    /// An announcement from an earlier membership epoch (a dead master's last message, read from a connection it
    /// wrote before it died, after the new master's) changes nothing: prepares keep recording the newer one.
    func testAnOlderMembershipAnnouncementIsIgnored() {
        var participant = Participant(server: "r1")
        let members = [Member(id: "r1", host: "h1", port: 1)]
        let stale = members + [Member(id: "r2", host: "h2", port: 2)]
        _ = send(WireRequest(seq: 11, command: .memb, value: Member.encode(members)), to: &participant)
        XCTAssertEqual(send(WireRequest(seq: 10, command: .memb, value: Member.encode(stale)), to: &participant),
                       [reply(nextID, true, .ok, seq: 11)])
        let op = WriteOp.put(key: key, value: [1])
        XCTAssertEqual(send(op.prepareRequest(seq: 7), to: &participant).first,
                       .persist(.prepare(seq: 7, op: op, members: members)))
    }

    // MARK: - Snapshots

    func testSnapshotRestoresStoreLocksAndDecisions() throws {
        var participant = Participant(server: "r1")
        committed(&participant, seq: 1, .put(key: key, value: [1]))
        committed(&participant, seq: 2, .put(key: key, value: [2]))
        _ = send(.put(3, other, [3]), to: &participant)
        _ = send(.abrt(4), to: &participant)
        var records: [SnapshotRecord] = []
        participant.writeSnapshot(generation: 7) { records.append(SnapshotRecord.decodeRoundTrip($0)) }
        XCTAssertEqual(records.first, .header(generation: 7, lastCommittedSeq: 2, maxForgottenSeq: 0, joined: true))

        var restored = Participant(server: "r1")
        for record in records { try restored.restore(record, nowMs: 0) }
        XCTAssertEqual(restored.store, participant.store)
        XCTAssertEqual(restored.digest, participant.digest)
        XCTAssertEqual(restored.lastCommittedSeq, 2)
        XCTAssertEqual(restored.inDoubt, [3])
        XCTAssertEqual(restored.lockHolder(of: other), 3)
        XCTAssertEqual(send(.put(4, key, [9]), to: &restored), [reply(nextID, false, .aborted, seq: 4)])
        XCTAssertEqual(send(.com(2), to: &restored), [.persist(.commit(seq: 2)), reply(nextID, true, .ok, seq: 2)])
    }

    func testSnapshotTrailerMismatchIsRejected() {
        var participant = Participant(server: "r1")
        XCTAssertThrowsError(try participant.restore(.trailer(entries: 1, prepared: 0, decided: 0, digest: 0), nowMs: 0))
    }
}

private extension SnapshotRecord {
    /// Encodes and decodes `record`, so the test also covers the byte format.
    static func decodeRoundTrip(_ record: SnapshotRecord) -> SnapshotRecord {
        (try? SnapshotRecord.decode(record.encoded())) ?? .trailer(entries: .max, prepared: 0, decided: 0, digest: 0)
    }
}
