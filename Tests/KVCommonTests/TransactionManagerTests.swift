@testable import KVCommon
import XCTest

/// The master's rules, event by event, comparing the actions that come out.
final class TransactionManagerTests: XCTestCase {
    typealias Action = TransactionManager.Action

    private func replica(_ id: String, host: String? = nil) -> ClusterConfig.Replica {
        ClusterConfig.Replica(id: id, host: host ?? "h-\(id)", port: 7000, dataDir: "/data/\(id)")
    }

    private func settings(_ replicas: [ClusterConfig.Replica]) -> TransactionManager.Settings {
        TransactionManager.Settings(masterID: "m1", replicas: replicas, timeouts: ClusterConfig.Timeouts(),
                                    inFlightMax: 16, compactBytes: 1 << 20)
    }

    private func stat(_ replica: ClusterConfig.Replica, joined: Bool = true, since: UInt64 = 0,
                      inDoubt: [UInt64] = []) -> WireReply {
        var stat = ReplicaStat(keys: 0, digest: 0, lastCommittedSeq: 0, inDoubt: inDoubt.map { .init(seq: $0, ageMs: 0) })
        stat.joined = joined
        stat.joinedSince = since
        return WireReply(status: true, code: .ok, message: "ok", seq: 0, server: replica.id, stat: stat)
    }

    private func ok(_ replica: ClusterConfig.Replica, seq: UInt64? = nil) -> WireReply {
        WireReply(status: true, code: .ok, message: "ok", seq: seq, server: replica.id)
    }

    /// A started manager whose replicas are all connected and have answered their first `stat`.
    private func started(_ replicas: [ClusterConfig.Replica], recovered: MasterState?,
                         joined: [String: Bool] = [:]) -> TransactionManager {
        var manager = TransactionManager(settings: settings(replicas), recovered: recovered,
                                         decisions: [DecisionJournal.Generation(number: 1, records: [])])
        _ = manager.handle(.start)
        for replica in replicas {
            _ = manager.handle(.connected(replica))
            let member = recovered?.members?.first { $0.replica == replica }
            _ = manager.handle(.replied(replica, .connect,
                                        stat(replica, joined: joined[replica.id] ?? true, since: member?.joinedAt ?? 0)))
        }
        return manager
    }

    private func sends(_ actions: [Action]) -> [(String, WireCommand, TransactionManager.Call)] {
        actions.compactMap { action in
            guard case .send(let replica, let request, let call) = action else { return nil }
            return (replica.id, request.command, call)
        }
    }

    private func persisted(_ actions: [Action]) -> [MasterState] {
        actions.compactMap { if case .persist(let state) = $0 { return state } else { return nil } }
    }

    private func put(_ manager: inout TransactionManager, id: UInt64 = 1) -> [Action] {
        let op = WriteOp.put(key: Array("k".utf8), value: Array("v".utf8))
        return manager.handle(.write(id, .init(op)))
    }

    // MARK: - Start

    /// The seq epoch moves on and is persisted before anything else happens.
    func testStartPersistsTheNextEpochsFirst() {
        let r1 = replica("r1")
        var manager = TransactionManager(settings: settings([r1]),
                                         recovered: MasterState(seqEpoch: 4, configEpoch: 9, members: []),
                                         decisions: [])
        let actions = manager.handle(.start)
        guard case .persist(let state)? = actions.first else { return XCTFail("\(actions)") }
        XCTAssertEqual(state.seqEpoch, 5)
        XCTAssertEqual(state.configEpoch, 10)
        // A new run announces its participants under a new membership epoch: replicas then ignore whatever a
        // dead master's connections still deliver.
        XCTAssertEqual(state.membershipEpoch, 1)
        XCTAssertEqual(manager.seqEpoch, 5)
    }

    // MARK: - Seq uniqueness (bug 3)

    /// No seq is issued before every in-sync replica has said which seqs it holds: a write waits (bounded).
    func testNoSeqIsIssuedBeforeEveryMemberReported() {
        let (r1, r2) = (replica("r1"), replica("r2"))
        let members = [r1, r2].map { MasterState.Member(replica: $0, joinedAt: 0) }
        var manager = TransactionManager(settings: settings([r1, r2]),
                                         recovered: MasterState(seqEpoch: 1, configEpoch: 1, members: members),
                                         decisions: [])
        _ = manager.handle(.start)
        XCTAssertTrue(sends(put(&manager)).isEmpty, "the write waits")
        XCTAssertTrue(sends(manager.handle(.replied(r1, .connect, stat(r1)))).allSatisfy { $0.1 != .put })
        let prepares = sends(manager.handle(.replied(r2, .connect, stat(r2)))).filter { $0.1 == .put }
        XCTAssertEqual(prepares.map(\.0), ["r1", "r2"])
        XCTAssertEqual(prepares.first?.2, .txn(2_000_000_001))
    }

    /// A replica holding a seq at or beyond this master's epoch (a lost or rewound decision log, or another master
    /// on a copy of it) moves the epoch above it, persisted before any seq of the new epoch.
    func testASeqReportedBeyondTheEpochMovesTheEpochAboveIt() {
        let r1 = replica("r1")
        var manager = TransactionManager(settings: settings([r1]),
                                         recovered: MasterState(seqEpoch: 1, configEpoch: 1,
                                                                members: [.init(replica: r1, joinedAt: 0)]),
                                         decisions: [])
        _ = manager.handle(.start)
        var reply = stat(r1)
        reply.stat?.lastCommittedSeq = 5_000_000_007
        reply.stat?.inDoubt = [.init(seq: 5_000_000_009, ageMs: 0)]
        let actions = manager.handle(.replied(r1, .connect, reply))
        XCTAssertEqual(persisted(actions).last?.seqEpoch, 6)
        XCTAssertEqual(persisted(actions).last?.presumeAbortFrom, 6_000_000_000)
        let prepare = put(&manager).first { if case .send(_, let request, _) = $0 { return request.command == .put }
                                            return false }
        guard case .send(_, let request, _)? = prepare else { return XCTFail("no prepare") }
        XCTAssertEqual(request.seq, 6_000_000_001)
    }

    /// "No COMMIT here, so it aborted" holds only for seqs this decision log saw issued: below the point where it
    /// was found lost or rewound, and above the last seq it issued, the master cannot tell.
    func testPresumedAbortOnlyWhereTheDecisionLogKnowsEverything() {
        let r1 = replica("r1")
        var manager = started([r1], recovered: MasterState(seqEpoch: 1, configEpoch: 1, presumeAbortFrom: 1_000_000_000,
                                                            members: [.init(replica: r1, joinedAt: 0)]))
        func answer(_ seq: UInt64) -> ReplyCode? {
            for case .answerQuery(_, let reply) in manager.handle(.query(seq, seq: seq)) { return reply.code }
            return nil
        }
        _ = put(&manager)  // 2_000_000_001, still running
        XCTAssertEqual(answer(1_500_000_000), .aborted, "issued by an earlier run of this log, no COMMIT: aborted")
        XCTAssertEqual(answer(900_000_000), .unknownTransaction, "from before this log knew everything")
        XCTAssertEqual(answer(2_000_000_002), .unknownTransaction, "never issued by this master")
    }

    /// Between "every vote is yes" and "the COMMIT record is durable" the outcome is neither known nor free to
    /// be chosen: a replica asking then is told `busy` (ask again), never `aborted`; once the record is
    /// durable the same question is answered `committed`.
    func testAQueryWhileTheCommitIsBeingRecordedIsAnsweredBusyThenCommitted() {
        let r1 = replica("r1")
        var manager = started([r1], recovered: MasterState(seqEpoch: 1, configEpoch: 1, presumeAbortFrom: 1_000_000_000,
                                                            members: [.init(replica: r1, joinedAt: 0)]))
        func answer(_ seq: UInt64) -> WireReply? {
            for case .answerQuery(_, let reply) in manager.handle(.query(seq, seq: seq)) { return reply }
            return nil
        }
        guard let seq = sends(put(&manager)).first(where: { $0.1 == .put })?.2,
              case .txn(let number) = seq else { return XCTFail("no prepare sent") }
        let vote = manager.handle(.replied(r1, .txn(number), WireReply(status: true, code: .ok, message: "prepared",
                                                                         seq: number, server: "r1")))
        var forced: DecisionLogToken?
        for case .log(.append(let records, let token?)) in vote where records.contains(where: {
            if case .commit(number, _, _, _) = $0 { return true } else { return false } }) { forced = token }
        guard let token = forced else { return XCTFail("no forced COMMIT record after the vote: \(vote)") }
        let pending = answer(number)
        XCTAssertEqual(pending?.code, .busy, "\(String(describing: pending))")
        XCTAssertEqual(pending?.status, false)
        XCTAssertEqual(pending?.message, "commit being recorded; ask again")
        _ = manager.handle(.logged(token))
        XCTAssertEqual(answer(number)?.code, .committed)
    }

    /// A commit owed to a replica that cluster.yaml no longer names is not ended: that replica may still run,
    /// in doubt, and ask; presumed abort would then tell it "aborted" for a committed write. It is answered
    /// "committed", and the commit is delivered once the replica is configured again.
    func testACommitOwedToARemovedReplicaIsNeverPresumedAborted() {
        let (r1, r2) = (replica("r1"), replica("r2"))
        let seq: UInt64 = 1_000_000_007
        var manager = TransactionManager(settings: settings([r1]),
                                         recovered: MasterState(seqEpoch: 1, configEpoch: 1, presumeAbortFrom: 1_000_000_000,
                                                                members: [.init(replica: r1, joinedAt: 0)]),
                                         decisions: [.init(number: 1, records: [.commit(seq: seq, participants: ["r1", "r2"])])])
        var actions = manager.handle(.start)
        _ = manager.handle(.connected(r1))
        actions += manager.handle(.replied(r1, .connect, stat(r1)))
        XCTAssertTrue(sends(actions).contains { $0.0 == "r1" && $0.1 == .com })
        actions = manager.handle(.replied(r1, .deliver(seq), ok(r1, seq: seq)))
        let ended = actions.contains { if case .log(.append(let records, _)) = $0 { return records.contains(.end(seq: seq)) }
                                       return false }
        XCTAssertFalse(ended, "END logged although r2 never acknowledged: \(actions)")
        var answer: ReplyCode?
        for case .answerQuery(_, let reply) in manager.handle(.query(1, seq: seq)) { answer = reply.code }
        XCTAssertEqual(answer, .committed)
        // r2 configured again: the commit goes to it, and its ack ends the transaction.
        actions = manager.handle(.reload(settings([r1, r2]), 1, notes: []))
        for _ in 0..<3 where !sends(actions).contains(where: { $0.0 == "r2" && $0.1 == .com }) {
            actions += manager.handle(.timer(.redeliver(seq)))
        }
        XCTAssertTrue(sends(actions).contains { $0.0 == "r2" && $0.1 == .com }, "\(actions)")
    }

    /// A replica that ignores the announcement because it holds a newer membership epoch (master-state restored
    /// from a backup) makes the master move above it and announce again.
    func testAMembershipEpochAheadOfTheMasterIsOvertaken() {
        let r1 = replica("r1")
        var manager = started([r1], recovered: MasterState(seqEpoch: 1, configEpoch: 1, membershipEpoch: 3,
                                                            members: [.init(replica: r1, joinedAt: 0)]))
        let actions = manager.handle(.replied(r1, .membership, ok(r1, seq: 40)))
        XCTAssertEqual(persisted(actions).last?.membershipEpoch, 41)
        let announced = actions.compactMap { action -> UInt64? in
            guard case .send(_, let request, .membership) = action else { return nil }
            return request.seq
        }
        XCTAssertEqual(announced, [41])
        XCTAssertTrue(manager.handle(.replied(r1, .membership, ok(r1, seq: 41))).isEmpty)
    }

    // MARK: - Membership across restarts (bug 2)

    /// A replica that was syncing when the master stopped stays out of writes and reads after the restart, even
    /// though it reports itself in sync (a stale copy put back, or one whose transfer never finished).
    func testARestartKeepsReplicasThatWereNotInSyncOutOfTheWrites() {
        let (r1, r2, r3) = (replica("r1"), replica("r2"), replica("r3"))
        let members = [MasterState.Member(replica: r1, joinedAt: 5), MasterState.Member(replica: r2, joinedAt: 5)]
        var manager = started([r1, r2, r3], recovered: MasterState(seqEpoch: 1, configEpoch: 1, members: members))
        XCTAssertEqual(manager.view.syncing, ["r3"])
        let prepares = sends(put(&manager)).filter { $0.1 == .put }.map(\.0)
        XCTAssertEqual(prepares, ["r1", "r2"])
    }

    /// The same replica moved to another address (or another disk) is a different one: syncing.
    func testAMemberAtAnotherAddressIsNotInSync() {
        let (r1, r2) = (replica("r1"), replica("r2"))
        let members = [MasterState.Member(replica: r1, joinedAt: 5), MasterState.Member(replica: r2, joinedAt: 5)]
        let manager = started([r1, replica("r2", host: "elsewhere")],
                              recovered: MasterState(seqEpoch: 1, configEpoch: 1, members: members))
        XCTAssertEqual(manager.view.syncing, ["r2"])
    }

    /// A replica reporting another join than the one the master recorded is not the copy it synced.
    func testAMemberThatJoinedAtAnotherSeqIsNotInSync() {
        let (r1, r2) = (replica("r1"), replica("r2"))
        let members = [MasterState.Member(replica: r1, joinedAt: 5), MasterState.Member(replica: r2, joinedAt: 5)]
        var manager = TransactionManager(settings: settings([r1, r2]),
                                         recovered: MasterState(seqEpoch: 1, configEpoch: 1, members: members),
                                         decisions: [])
        _ = manager.handle(.start)
        _ = manager.handle(.replied(r1, .connect, stat(r1, since: 5)))
        _ = manager.handle(.replied(r2, .connect, stat(r2, since: 3)))
        XCTAssertEqual(manager.view.syncing, ["r2"])
    }

    /// Every change of the in-sync set is persisted before it is announced or takes effect.
    func testAMembershipChangeIsPersistedBeforeItIsAnnounced() {
        let (r1, r2, r3) = (replica("r1"), replica("r2"), replica("r3"))
        let members = [r1, r2, r3].map { MasterState.Member(replica: $0, joinedAt: 5) }
        var manager = started([r1, r2, r3], recovered: MasterState(seqEpoch: 1, configEpoch: 1, members: members))
        _ = manager.handle(.replied(r3, .probe, stat(r3, joined: false)))  // r3 came back empty
        let actions = manager.handle(.timer(.probe))
        let persist = actions.firstIndex { if case .persist = $0 { return true } else { return false } }
        let announce = actions.firstIndex { if case .send(_, let request, _) = $0 { return request.command == .memb } else { return false } }
        XCTAssertNotNil(persist)
        XCTAssertNotNil(announce)
        XCTAssertLessThan(persist ?? .max, announce ?? .min)
        XCTAssertEqual(persisted(actions).last?.members?.map(\.replica.id), ["r1", "r2"])
        XCTAssertEqual(manager.view.syncing, ["r3"])
    }

    /// A reload that moves a syncing replica abandons the transfer to the old address: its late `join` ack does
    /// not make the new address a participant, and a new transfer targets the new one.
    func testMovingASyncingReplicaRestartsItsTransfer() {
        let (r1, r2, r3) = (replica("r1"), replica("r2"), replica("r3"))
        let members = [r1, r2].map { MasterState.Member(replica: $0, joinedAt: 5) }
        var manager = started([r1, r2, r3], recovered: MasterState(seqEpoch: 1, configEpoch: 1, members: members))
        guard let attempt = manager.transfers["r3"]?.attempt, manager.transfers["r3"]?.current != nil else {
            return XCTFail("no transfer of r3 began")
        }
        let moved = replica("r3", host: "new-host")
        let reloaded = manager.handle(.reload(settings([r1, r2, moved]), 1, notes: []))
        XCTAssertEqual(manager.view.syncing, ["r3"])
        XCTAssertTrue(reloaded.contains { if case .send(moved, let request, _) = $0 { return request.command == .reset }
                                          return false }, "a new transfer targets the new address: \(reloaded)")
        _ = manager.handle(.replied(r3, .transfer("r3", attempt: attempt, .join), ok(r3)))
        XCTAssertEqual(manager.view.syncing, ["r3"], "a reply of the abandoned transfer changed nothing")
    }
}
