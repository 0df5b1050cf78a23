@testable import KVCommon
import XCTest

/// Every request and reply the limits admit fits the line bounds derived from them, with the bytes that grow
/// most: control characters (six bytes each as JSON text), `%` and `;` (three bytes each as wire escapes).
final class WireBoundsTests: XCTestCase {
    private let small: ClusterConfig.Limits = {
        var limits = ClusterConfig.Limits()
        limits.keyBytesMax = 64
        limits.valueBytesMax = 4096
        limits.listLimitMax = 1000
        limits.txnOpsMax = 16
        limits.txnBytesMax = 16 * (64 + 4096)
        return limits
    }()

    private func worstKey(_ index: Int, _ limits: ClusterConfig.Limits) -> [UInt8] {
        let stem = Array(String(format: "k%05d", index).utf8)
        return stem + Array(repeating: 0x01, count: limits.keyBytesMax - stem.count)
    }

    private func worstValue(_ limits: ClusterConfig.Limits) -> [UInt8] { Array(repeating: 0x01, count: limits.valueBytesMax) }

    /// A joined participant holding `count` entries at the key and value limits.
    private func filled(_ count: Int, _ limits: ClusterConfig.Limits) -> Participant {
        var participant = Participant(server: "r1", pageBytesMax: limits.pageBytesMax)
        for index in 0..<count {
            let seq = UInt64(index + 1)
            _ = participant.handle(.request(.put(seq, worstKey(index, limits), worstValue(limits)), 0, nowMs: 0))
            _ = participant.handle(.request(.com(seq), 0, nowMs: 0))
        }
        return participant
    }

    private func replyLine(_ participant: inout Participant, _ request: WireRequest) -> WireReply {
        let actions = participant.handle(.request(request, 7, nowMs: 0))
        guard case .reply(_, let reply)? = actions.last else {
            XCTFail("no reply to \(request.command)")
            return WireReply(status: false, code: .badRequest, message: "", seq: nil, server: "")
        }
        return reply
    }

    func testAGetOfTheLargestValueOfControlCharactersFitsAndReadsBack() {
        for limits in [small, ClusterConfig.Limits()] {
            var participant = filled(1, limits)
            let reply = replyLine(&participant, .get(worstKey(0, limits)))
            let line = reply.encoded()
            XCTAssertLessThanOrEqual(line.count, limits.wireReplyBytesMax)
            XCTAssertLessThan(line.count, limits.valueBytesMax * 2, "the value travels as base64, not as \\u0001 escapes")
            XCTAssertEqual(try WireReply.parse(line, valueExpected: true).get().value, worstValue(limits))
        }
    }

    func testTextThatEscapesLittleStaysText() {
        var reply = WireReply(status: true, code: .ok, message: "", seq: 1, server: "r1")
        reply.value = Array("line one\nline \"two\"".utf8)
        let line = String(decoding: reply.encoded(), as: UTF8.self)
        XCTAssertTrue(line.contains("line one\\nline \\\"two\\\""), line)
        XCTAssertFalse(line.contains("base64"), line)
    }

    func testAFullListingOfTheLargestEntriesComesInPagesThatFit() {
        var participant = filled(small.listLimitMax, small)
        var after: [UInt8] = []
        var seen = 0
        var pages = 0
        while true {
            let request = WireRequest(seq: UInt64(small.listLimitMax), command: .list, key: [], value: after)
            let line = replyLine(&participant, request).encoded()
            XCTAssertLessThanOrEqual(line.count, small.wireReplyBytesMax)
            let page = try! XCTUnwrap(try WireReply.parse(line, valueExpected: false).get().page)
            XCTAssertFalse(page.entries.isEmpty)
            XCTAssertTrue(page.entries.allSatisfy { $0.value == worstValue(small) })
            seen += page.entries.count
            pages += 1
            if page.done { break }
            after = page.entries.last!.key
        }
        XCTAssertEqual(seen, small.listLimitMax)
        XCTAssertGreaterThan(pages, 1, "a thousand entries of 4 KiB do not fit one page")
    }

    func testStateTransferPagesOfTheLargestEntriesFit() {
        var participant = filled(300, small)
        let opened = replyLine(&participant, WireRequest(seq: nil, command: .snap))
        var copied = 0
        while true {
            let line = replyLine(&participant, WireRequest(seq: opened.seq, command: .page)).encoded()
            XCTAssertLessThanOrEqual(line.count, small.wireReplyBytesMax)
            let page = try! XCTUnwrap(try WireReply.parse(line, valueExpected: false).get().page)
            copied += page.entries.count
            if page.done { break }
        }
        XCTAssertEqual(copied, 300)
    }

    func testATransactionAtItsLimitsFitsBothWays() {
        var participant = filled(small.txnOpsMax, small)
        // The largest prepare: txn_bytes_max of keys and values in txn_ops_max puts.
        let puts = (0..<small.txnOpsMax).map { TxnSpec.Op.put(key: worstKey($0, small), value: worstValue(small)) }
        let spec = TxnSpec(compare: [], success: puts, failure: [])
        XCTAssertLessThanOrEqual(spec.sizeBytes, small.txnBytesMax)
        let prepare = WireRequest(seq: 100, command: .txn, value: spec.wireJSON()).encoded()
        XCTAssertLessThanOrEqual(prepare.count, small.wireRequestBytesMax)
        // The largest vote: txn_ops_max gets of the largest entries.
        let gets = (0..<small.txnOpsMax).map { TxnSpec.Op.get(key: worstKey($0, small)) }
        let read = WireRequest(seq: 101, command: .txn, value: TxnSpec(compare: [], success: gets, failure: []).wireJSON())
        let vote = replyLine(&participant, read).encoded()
        XCTAssertLessThanOrEqual(vote.count, small.wireReplyBytesMax)
        let result = try! XCTUnwrap(try WireReply.parse(vote, valueExpected: false).get().txn)
        XCTAssertEqual(result.reads.count, small.txnOpsMax)
    }

    func testAPutOfEscapedBytesAtTheLimitsFits() {
        for limits in [small, ClusterConfig.Limits()] {
            let key = Array(repeating: UInt8(ascii: "%"), count: limits.keyBytesMax)
            let value = Array(repeating: UInt8(ascii: ";"), count: limits.valueBytesMax)
            let line = WireRequest.put(UInt64.max, key, value).encoded()
            XCTAssertLessThanOrEqual(line.count, limits.wireRequestBytesMax)
            XCTAssertEqual(try WireRequest.parse(line, maxLineBytes: limits.wireRequestBytesMax).get().value, value)
        }
    }
}

/// The replica applies the transaction limits itself (the security issue: "one `txn` line naming 10^5 keys locks
/// them all"): a prepare beyond `txn_ops_max` or `txn_bytes_max` is refused and locks nothing.
final class ReplicaTxnLimitTests: XCTestCase {
    private let limits = ClusterConfig.Limits()

    private func prepare(_ participant: inout Participant, _ spec: TxnSpec, seq: UInt64) -> WireReply? {
        let actions = participant.handle(.request(WireRequest(seq: seq, command: .txn, value: spec.wireJSON()), 1, nowMs: 0))
        guard case .reply(_, let reply)? = actions.last else { return nil }
        return reply
    }

    func testATxnOverTheOpsLimitIsRefusedAndLocksNothing() {
        var participant = Participant(server: "r1")
        let puts = (0...limits.txnOpsMax).map { TxnSpec.Op.put(key: Array("k\($0)".utf8), value: [0x61]) }
        let reply = prepare(&participant, TxnSpec(compare: [], success: puts, failure: []), seq: 5)
        XCTAssertEqual(reply?.code, .badRequest)
        XCTAssertTrue(reply?.message.contains("txn_ops_max") == true, reply?.message ?? "")
        XCTAssertTrue(participant.locks.isEmpty)
        // At the limit it prepares.
        let most = Array(puts.prefix(limits.txnOpsMax))
        XCTAssertEqual(prepare(&participant, TxnSpec(compare: [], success: most, failure: []), seq: 6)?.code, .ok)
        XCTAssertEqual(participant.locks.count, limits.txnOpsMax)
    }

    func testATxnOverTheBytesLimitIsRefused() {
        var participant = Participant(server: "r1")
        let big = [TxnSpec.Op.put(key: Array("k".utf8), value: Array(repeating: 0x61, count: limits.txnBytesMax))]
        let reply = prepare(&participant, TxnSpec(compare: [], success: big, failure: []), seq: 5)
        XCTAssertEqual(reply?.code, .badRequest)
        XCTAssertTrue(reply?.message.contains("txn_bytes_max") == true, reply?.message ?? "")
        XCTAssertTrue(participant.locks.isEmpty)
    }
}
