@testable import KVCommon
import XCTest

/// The master's lease rules: deadlines from the change stream, keepalive, attachment and detachment by version,
/// the removal transaction's compares, the one-transaction size bound, and a start from the listed keys.
final class LeaseTableTests: XCTestCase {
    typealias Change = ChangeHistory.Change

    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    private func loaded(opsMax: Int = 128) -> LeaseTable {
        var table = LeaseTable(opsMax: opsMax, bytesMax: 1 << 20)
        table.load([], nowMs: 0)
        return table
    }

    /// The changes of `LeaseTable.grant`, committed at `seq`.
    private func granted(_ id: UInt64, ttl: UInt64, seq: UInt64) -> [Change] {
        [Change(index: 0, kind: .put, key: LeaseKeys.record(id), value: bytes(String(ttl)), version: seq, created: seq)]
    }

    /// The changes of `LeaseTable.attach` of `key` to `id`, committed at `seq`.
    private func attached(_ key: String, to id: UInt64, ttl: UInt64 = 10, seq: UInt64) -> [Change] {
        [Change(index: 0, kind: .put, key: bytes(key), value: bytes("v"), version: seq, created: seq, lease: id),
         Change(index: 0, kind: .put, key: LeaseKeys.marker(bytes(key)), value: bytes(String(id)), version: seq,
                created: seq, lease: id),
         Change(index: 0, kind: .put, key: LeaseKeys.record(id), value: bytes(String(ttl)), version: seq, created: 1)]
    }

    func testAGrantLivesForItsTTLAndKeepaliveRestartsIt() {
        var table = loaded()
        table.apply(granted(7, ttl: 10, seq: 100), nowMs: 1_000)
        XCTAssertEqual(table.lease(7, nowMs: 1_000)?.deadlineMs, 11_000)
        XCTAssertEqual(table.keepAlive(7, nowMs: 6_000)?.deadlineMs, 16_000)
        XCTAssertEqual(table.takeExpired(nowMs: 15_999), [])
        XCTAssertEqual(table.takeExpired(nowMs: 16_000), [7])
        XCTAssertEqual(table.takeExpired(nowMs: 20_000), [], "taken once while its removal runs")
        XCTAssertNil(table.keepAlive(7, nowMs: 16_001), "an expiring lease cannot be kept alive")
        XCTAssertNil(table.lease(7, nowMs: 16_001))
        table.removalFailed(7)
        XCTAssertEqual(table.takeExpired(nowMs: 20_000), [7], "a removal that did not commit runs again")
        table.apply([Change(index: 0, kind: .delete, key: LeaseKeys.record(7), version: 200, created: 100)], nowMs: 20_000)
        XCTAssertTrue(table.leases.isEmpty)
    }

    func testChangesBeforeTheLoadAreIgnoredAndTheLoadGivesEveryLeaseItsFullTTL() {
        var table = LeaseTable(opsMax: 128, bytesMax: 1 << 20)
        table.apply(granted(1, ttl: 5, seq: 10), nowMs: 0)
        XCTAssertTrue(table.leases.isEmpty)
        table.load([(LeaseKeys.marker(bytes("a")), bytes("1"), 20), (LeaseKeys.marker(bytes("orphan")), bytes("9"), 21),
                    (LeaseKeys.record(1), bytes("5"), 20)], nowMs: 50_000)
        XCTAssertEqual(table.lease(1, nowMs: 50_000)?.deadlineMs, 55_000)
        XCTAssertEqual(table.leases[1]?.keys, [bytes("a"): 20])
        XCTAssertEqual(table.leases.count, 1, "a marker naming no lease is ignored")
    }

    func testAKeyWrittenOrDeletedWithoutItsLeaseIsDetached() {
        var table = loaded()
        table.apply(granted(7, ttl: 10, seq: 100), nowMs: 0)
        table.apply(attached("a", to: 7, seq: 101), nowMs: 0)
        table.apply(attached("b", to: 7, seq: 102), nowMs: 0)
        XCTAssertEqual(table.leases[7]?.keys, [bytes("a"): 101, bytes("b"): 102])
        XCTAssertEqual(table.leases[7]?.version, 102, "each attach rewrites the record")
        table.apply([Change(index: 0, kind: .put, key: bytes("a"), value: bytes("plain"), version: 103, created: 101)],
                    nowMs: 0)
        table.apply([Change(index: 0, kind: .delete, key: bytes("b"), version: 104, created: 102)], nowMs: 0)
        XCTAssertEqual(table.leases[7]?.keys, [:])
        XCTAssertEqual(table.leases[7]?.stale, [bytes("a"): 101, bytes("b"): 102])
        // The removal deletes the markers, compared at the version that wrote them, and leaves the keys.
        let removal = LeaseTable.removal(of: table.leases[7]!)
        XCTAssertEqual(removal.compare, [
            TxnSpec.Compare(key: LeaseKeys.record(7), target: .version, number: 102),
            TxnSpec.Compare(key: LeaseKeys.marker(bytes("a")), target: .version, number: 101),
            TxnSpec.Compare(key: LeaseKeys.marker(bytes("b")), target: .version, number: 102)])
        XCTAssertEqual(removal.success, [.delete(key: LeaseKeys.record(7)), .delete(key: LeaseKeys.marker(bytes("a"))),
                                         .delete(key: LeaseKeys.marker(bytes("b")))])
    }

    func testTheRemovalComparesEachAttachedKeyAtItsAttachingVersion() {
        var table = loaded()
        table.apply(granted(7, ttl: 10, seq: 100), nowMs: 0)
        table.apply(attached("a", to: 7, seq: 101), nowMs: 0)
        let removal = LeaseTable.removal(of: table.leases[7]!)
        XCTAssertEqual(removal.compare, [TxnSpec.Compare(key: LeaseKeys.record(7), target: .version, number: 101),
                                         TxnSpec.Compare(key: bytes("a"), target: .version, number: 101)])
        XCTAssertEqual(removal.success, [.delete(key: LeaseKeys.record(7)), .delete(key: bytes("a")),
                                         .delete(key: LeaseKeys.marker(bytes("a")))])
        XCTAssertEqual(removal.failure, [])
        // The removal commits: the lease and its key are gone from the table.
        table.apply([Change(index: 0, kind: .delete, key: LeaseKeys.record(7), version: 105, created: 100),
                     Change(index: 0, kind: .expire, key: bytes("a"), version: 105, created: 101),
                     Change(index: 0, kind: .delete, key: LeaseKeys.marker(bytes("a")), version: 105, created: 101)],
                    nowMs: 0)
        XCTAssertTrue(table.leases.isEmpty)
        XCTAssertFalse(table.hasAttachments)
    }

    func testAKeyMovedToAnotherLeaseLeavesTheFirst() {
        var table = loaded()
        table.apply(granted(1, ttl: 10, seq: 100), nowMs: 0)
        table.apply(granted(2, ttl: 10, seq: 101), nowMs: 0)
        table.apply(attached("k", to: 1, seq: 102), nowMs: 0)
        table.apply(attached("k", to: 2, seq: 103), nowMs: 0)
        XCTAssertEqual(table.leases[1]?.keys, [:])
        XCTAssertEqual(table.leases[1]?.stale, [:], "its marker is the second lease's now")
        XCTAssertEqual(table.leases[2]?.keys, [bytes("k"): 103])
    }

    func testAnAttachIsRefusedWhenTheRemovalWouldNotFitOneTransaction() {
        // txn_ops_max 11: the record's compare and delete, then 3 ops a key: 3 keys.
        var table = loaded(opsMax: 11)
        table.apply(granted(7, ttl: 10, seq: 100), nowMs: 0)
        for (index, key) in ["a", "b"].enumerated() {
            guard case .success = table.beginAttach(bytes(key), to: 7, nowMs: 0) else { return XCTFail("refused \(key)") }
            table.apply(attached(key, to: 7, seq: 101 + UInt64(index)), nowMs: 0)
            table.attachDone(bytes(key), to: 7)
        }
        guard case .success = table.beginAttach(bytes("c"), to: 7, nowMs: 0) else { return XCTFail("c refused") }
        XCTAssertEqual(table.beginAttach(bytes("d"), to: 7, nowMs: 0).failure, .full(keys: 3),
                       "an attach in flight counts")
        guard case .success = table.beginAttach(bytes("a"), to: 7, nowMs: 0) else {
            return XCTFail("re-attaching a key it holds adds nothing")
        }
        XCTAssertEqual(table.removalCost(table.leases[7]!).ops, 11)
        XCTAssertEqual(table.beginAttach(bytes("x"), to: 8, nowMs: 0).failure, .notFound)
        XCTAssertEqual(table.beginAttach(bytes("x"), to: 7, nowMs: 10_000).failure, .notFound, "expired")
    }

    /// A refresh marks a key stale only when a read showed another version: a read that failed (its wait for a
    /// locked key ran out, the replica is not in sync) shows nothing. Taken as "absent", the lease's removal would
    /// delete only the marker, and the key, if the write holding it aborted, would outlive its lease.
    func testARefreshReadThatFailedShowsNoVersion() {
        let found = WireReply(status: true, code: .ok, message: "v", seq: 12, server: "r1", value: bytes("v"))
        XCTAssertEqual(LeaseTable.version(from: found), 12)
        XCTAssertEqual(LeaseTable.version(from: WireReply(status: false, code: .notFound, message: "not found",
                                                           seq: nil, server: "r1")), 0)
        XCTAssertNil(LeaseTable.version(from: WireReply(status: false, code: .timeout, message: "key is locked by "
            + "undecided transaction 9; retry later", seq: nil, server: "r1")))
        XCTAssertNil(LeaseTable.version(from: WireReply(status: false, code: .notSynced, message: "not in sync",
                                                        seq: nil, server: "r1")))
    }

    func testReservedKeysAreOutOfEveryClientScope() {
        XCTAssertTrue(LeaseKeys.isReserved(LeaseKeys.record(1)))
        XCTAssertFalse(LeaseKeys.isReserved([0xFF] + bytes("kv")))
        XCTAssertFalse(ChangeHistory.Scope.prefix([]).contains(LeaseKeys.marker(bytes("a"))))
        XCTAssertTrue(ChangeHistory.Scope.prefix([]).contains([0xFF, 0x01]))
        XCTAssertEqual(LeaseKeys.parse(LeaseKeys.record(42)), .record(42))
        XCTAssertEqual(LeaseKeys.parse(LeaseKeys.marker(bytes("k"))), .marker(key: bytes("k")))
        XCTAssertEqual(LeaseKeys.parse(LeaseKeys.recordPrefix + bytes("007")), .other)
        XCTAssertNil(LeaseKeys.number(bytes("12a")))
        XCTAssertNil(LeaseKeys.number(bytes("99999999999999999999")))
    }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}

/// What the master does after a lease's removal answers: an expiry never gives up, a revoke does.
final class LeaseRemovalTests: XCTestCase {
    private func outcome(committed: Bool, succeeded: Bool?, failure: Coordinator.Failure? = nil)
        -> TransactionManager.WriteAnswer {
        var outcome = Coordinator.Outcome(seq: 7, committed: committed, txn: nil, failure: failure, replicas: [],
                                          pendingCommit: [])
        if let succeeded { outcome.txn = TxnResult(succeeded: succeeded, reads: [], writeCreated: []) }
        return .outcome(outcome)
    }

    func testTheVerdictTellsARemovalFromAFailedCompareAConflictAndAWriteThatDidNotRun() {
        guard case .removed = LeaseRemoval.verdict(outcome(committed: true, succeeded: true)) else {
            return XCTFail("a committed removal whose compares held removed the lease")
        }
        XCTAssertEqual(LeaseRemoval.verdict(outcome(committed: true, succeeded: false)), .compareFailed)
        XCTAssertEqual(LeaseRemoval.verdict(outcome(committed: false, succeeded: nil, failure: .conflict)), .conflict)
        XCTAssertEqual(LeaseRemoval.verdict(outcome(committed: false, succeeded: nil, failure: .unavailable)), .notRun)
        XCTAssertEqual(LeaseRemoval.verdict(.refused("too many transactions in flight")), .notRun)
    }

    func testAnExpiryRetriesAfterAFailedCompareAtOnceThenEverySecondAndNeverGivesUp() {
        XCTAssertEqual(LeaseRemoval.afterExpiry(.compareFailed, attempt: 0), .again(attempt: 1, delayMs: 0...0))
        let last = LeaseRemoval.compareAttemptsMax - 1
        XCTAssertEqual(LeaseRemoval.afterExpiry(.compareFailed, attempt: last), .again(attempt: 1, delayMs: 1000...1000))
        XCTAssertEqual(LeaseRemoval.afterExpiry(.notRun, attempt: 0), .again(attempt: 1, delayMs: 1000...1000))
        XCTAssertEqual(LeaseRemoval.afterExpiry(.conflict, attempt: 2), .again(attempt: 2, delayMs: 5...30))
    }

    func testARevokeGivesUpOnAWriteThatDidNotRunOrOnKeysThatKeepChanging() {
        XCTAssertEqual(LeaseRemoval.afterRevoke(.notRun, compareFailures: 0, attempts: 0), .giveUp)
        XCTAssertEqual(LeaseRemoval.afterRevoke(.compareFailed, compareFailures: 0, attempts: 0),
                       .again(attempt: 1, delayMs: 0...0))
        XCTAssertEqual(LeaseRemoval.afterRevoke(.compareFailed, compareFailures: LeaseRemoval.compareAttemptsMax - 1,
                                                attempts: 4), .giveUp)
        XCTAssertEqual(LeaseRemoval.afterRevoke(.conflict, compareFailures: 1, attempts: 3),
                       .again(attempt: 1, delayMs: 2...20))
        XCTAssertEqual(LeaseRemoval.afterRevoke(.conflict, compareFailures: 0,
                                                attempts: LeaseRemoval.revokeAttemptsMax - 1), .giveUp)
    }
}
