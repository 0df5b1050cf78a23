@testable import KVCommon
import XCTest

/// The change index as the master issues it: each commit's changes are published once its COMMIT is durable,
/// in index order, before its `com` and its answer; the answer carries the index.
final class TransactionManagerChangesTests: XCTestCase {
    typealias Action = TransactionManager.Action
    typealias Change = ChangeHistory.Change

    private let r1 = ClusterConfig.Replica(id: "r1", host: "h-r1", port: 7000, dataDir: "/data/r1")

    private func started() -> TransactionManager {
        let settings = TransactionManager.Settings(masterID: "m1", replicas: [r1], timeouts: ClusterConfig.Timeouts(),
                                                   inFlightMax: 16, compactBytes: 1 << 20)
        var manager = TransactionManager(settings: settings, recovered: nil, decisions: [])
        _ = manager.handle(.start)
        _ = manager.handle(.connected(r1))
        var stat = ReplicaStat(keys: 0, digest: 0, lastCommittedSeq: 0, inDoubt: [])
        stat.joined = true
        _ = manager.handle(.replied(r1, .connect, WireReply(status: true, code: .ok, message: "ok", seq: 0,
                                                            server: "r1", stat: stat)))
        return manager
    }

    /// The seq of the prepare `actions` send.
    private func preparedSeq(_ actions: [Action]) -> UInt64? {
        for case .send(_, let request, .txn(let seq)) in actions where request.command != .com { return seq }
        return nil
    }

    private func vote(_ seq: UInt64, created: UInt64? = nil, txn: TxnResult? = nil) -> TransactionManager.Event {
        var reply = WireReply(status: true, code: .ok, message: "prepared", seq: seq, server: "r1")
        reply.created = created
        reply.txn = txn
        return .replied(r1, .txn(seq), reply)
    }

    private func kinds(_ actions: [Action]) -> [String] {
        actions.compactMap { action in
            switch action {
            case .changed(let index, _): return "changed \(index)"
            case .send(_, let request, _) where request.command == .com: return "com"
            case .answerWrite: return "answer"
            default: return nil
            }
        }
    }

    func testACommitPublishesItsChangeBeforeItsComAndItsAnswerWhichCarriesTheIndex() {
        var manager = started()
        let key = Array("k".utf8)
        let seq = preparedSeq(manager.handle(.write(1, .init(.put(key: key, value: Array("v".utf8))))))!
        _ = manager.handle(vote(seq, created: 77))
        let actions = manager.handle(.logged(.commit(seq)))
        XCTAssertEqual(kinds(actions), ["changed 1", "com", "answer"])
        XCTAssertTrue(actions.contains(.changed(1, [Change(index: 1, kind: .put, key: key, value: Array("v".utf8),
                                                           version: seq, created: 77)])))
        for case .answerWrite(_, .outcome(let outcome)) in actions { XCTAssertEqual(outcome.index, 1) }
        XCTAssertEqual(manager.history.lastIndex, 1)
    }

    /// A txn records the branch its votes chose, with each write's created seq; a del of an absent key (created 0)
    /// changes nothing and is left out.
    func testATxnRecordsTheChosenBranch() {
        var manager = started()
        let (a, b) = (Array("a".utf8), Array("b".utf8))
        let intent = TransactionManager.WriteIntent(
            prepare: WireRequest(seq: 1, command: .txn, value: Array("{}".utf8)),
            writes: [.put(key: a, value: [1])], failureWrites: [.delete(key: a), .delete(key: b), .put(key: b, value: [2])])
        let seq = preparedSeq(manager.handle(.write(1, intent)))!
        _ = manager.handle(vote(seq, txn: TxnResult(succeeded: false, reads: [], writeCreated: [5, 0, seq])))
        let actions = manager.handle(.logged(.commit(seq)))
        XCTAssertTrue(actions.contains(.changed(1, [
            Change(index: 1, kind: .delete, key: a, version: seq, created: 5),
            Change(index: 1, kind: .put, key: b, value: [2], version: seq, created: seq),
        ])), "\(actions)")
    }

    /// An attachment's puts carry its lease; an expiry's deletes of clients' keys are `expire`, of the lease's
    /// own keys plain deletes (watchers never see those).
    func testLeaseWritesCarryTheLeaseAndExpiriesTheirKind() {
        var manager = started()
        let key = Array("k".utf8)
        var attach = TransactionManager.WriteIntent(
            prepare: WireRequest(seq: 1, command: .txn, value: Array("{}".utf8)),
            writes: [.put(key: key, value: [1]), .put(key: LeaseKeys.marker(key), value: Array("7".utf8))])
        attach.lease = 7
        let first = preparedSeq(manager.handle(.write(1, attach)))!
        _ = manager.handle(vote(first, txn: TxnResult(succeeded: true, reads: [], writeCreated: [first, first])))
        XCTAssertTrue(manager.handle(.logged(.commit(first))).contains(.changed(1, [
            Change(index: 1, kind: .put, key: key, value: [1], version: first, created: first, lease: 7),
            Change(index: 1, kind: .put, key: LeaseKeys.marker(key), value: Array("7".utf8), version: first,
                   created: first, lease: 7),
        ])))
        var expiry = TransactionManager.WriteIntent(
            prepare: WireRequest(seq: 1, command: .txn, value: Array("{}".utf8)),
            writes: [.delete(key: key), .delete(key: LeaseKeys.marker(key))])
        expiry.expiry = true
        let second = preparedSeq(manager.handle(.write(2, expiry)))!
        _ = manager.handle(vote(second, txn: TxnResult(succeeded: true, reads: [], writeCreated: [first, first])))
        XCTAssertTrue(manager.handle(.logged(.commit(second))).contains(.changed(2, [
            Change(index: 2, kind: .expire, key: key, version: second, created: first),
            Change(index: 2, kind: .delete, key: LeaseKeys.marker(key), version: second, created: first),
        ])))
    }

    /// Durability reported out of order still publishes in index order, and a commit goes on (com, answer) only
    /// once its index is published.
    func testIndexesArePublishedInOrder() {
        var manager = started()
        let first = preparedSeq(manager.handle(.write(1, .init(.put(key: [1], value: [1])))))!
        let second = preparedSeq(manager.handle(.write(2, .init(.put(key: [2], value: [2])))))!
        _ = manager.handle(vote(first, created: first))
        _ = manager.handle(vote(second, created: second))
        XCTAssertEqual(kinds(manager.handle(.logged(.commit(second)))), [], "index 2 waits for index 1")
        XCTAssertEqual(kinds(manager.handle(.logged(.commit(first)))), ["changed 1", "changed 2", "com", "answer", "com", "answer"])
    }
}
