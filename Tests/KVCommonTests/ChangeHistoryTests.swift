@testable import KVCommon
import KVTestSupport
import XCTest

final class ChangeHistoryTests: XCTestCase {
    private typealias Change = ChangeHistory.Change

    private func put(_ index: UInt64, _ key: String, _ value: String = "v") -> Change {
        Change(index: index, kind: .put, key: Array(key.utf8), value: Array(value.utf8), version: index * 10,
               created: index * 10)
    }

    private func keys(_ result: Result<[Change], ChangeHistory.Compacted>) -> [String] {
        (try? result.get())?.map { String(decoding: $0.key, as: UTF8.self) } ?? ["compacted"]
    }

    func testServesEveryChangeAfterAResumePointInScopeAndOrder() {
        var history = ChangeHistory(countMax: 100, bytesMax: 1 << 20)
        history.append(index: 1, [put(1, "a/1")])
        history.append(index: 2, [put(2, "b/1"), put(2, "a/2")])   // one transaction, two keys
        history.append(index: 3, [])                                // a transaction that changed nothing
        history.append(index: 4, [Change(index: 4, kind: .delete, key: Array("a/1".utf8), version: 40, created: 10)])
        XCTAssertEqual(history.lastIndex, 4)
        XCTAssertEqual(keys(history.since(0, in: .prefix([]))), ["a/1", "b/1", "a/2", "a/1"])
        XCTAssertEqual(keys(history.since(1, in: .prefix(Array("a/".utf8)))), ["a/2", "a/1"])
        XCTAssertEqual(keys(history.since(2, in: .key(Array("a/1".utf8)))), ["a/1"])
        XCTAssertEqual(keys(history.since(4, in: .prefix([]))), [])
        XCTAssertEqual(keys(history.since(9, in: .prefix([]))), [], "a resume point ahead of the history waits")
        XCTAssertEqual(history.lastChange(in: .prefix(Array("b/".utf8))), 2)
        XCTAssertEqual(history.lastChange(in: .key(Array("c".utf8))), nil)
        // A limit counts indexes, and never splits a transaction.
        XCTAssertEqual(keys(history.since(0, in: .prefix([]), limit: 2)), ["a/1", "b/1", "a/2"])
    }

    func testEvictsWholeIndexesAndRefusesResumePointsBeforeThem() {
        var history = ChangeHistory(countMax: 3, bytesMax: 1 << 20)
        history.append(index: 1, [put(1, "a")])
        history.append(index: 2, [put(2, "b"), put(2, "c")])
        history.append(index: 3, [put(3, "d")])   // 4 changes: index 1 goes
        XCTAssertEqual(history.count, 3)
        XCTAssertEqual(history.compactedThrough, 1)
        XCTAssertEqual(keys(history.since(1, in: .prefix([]))), ["b", "c", "d"])
        XCTAssertEqual(history.since(0, in: .prefix([])), .failure(ChangeHistory.Compacted(oldestKept: 2, reread: 3)))
        // The newest index stays whole even when it alone is over the bounds.
        history.append(index: 4, [put(4, "e"), put(4, "f"), put(4, "g"), put(4, "h")])
        XCTAssertEqual(history.count, 4)
        XCTAssertEqual(history.compactedThrough, 3)
        XCTAssertEqual(keys(history.since(3, in: .prefix([]))), ["e", "f", "g", "h"])
    }

    func testTheByteBoundCountsKeysAndValues() {
        var history = ChangeHistory(countMax: 1000, bytesMax: 3 * (1 + 100 + 48))
        for index in UInt64(1)...5 { history.append(index: index, [put(index, "k", String(repeating: "x", count: 100))]) }
        XCTAssertEqual(history.count, 3)
        XCTAssertLessThanOrEqual(history.bytes, history.bytesMax)
        XCTAssertEqual(history.compactedThrough, 2)
    }

    func testAStartIndexRefusesOlderResumePoints() {
        let history = ChangeHistory(countMax: 10, bytesMax: 1000, startIndex: 50)
        XCTAssertEqual(history.since(49, in: .prefix([])), .failure(ChangeHistory.Compacted(oldestKept: 51, reread: 50)))
        XCTAssertEqual(keys(history.since(50, in: .prefix([]))), [])
    }

    /// Against a list that keeps everything: whatever is served equals the reference's suffix, and whatever is
    /// refused really lost something.
    func testMatchesAnUnboundedReference() {
        var random = SplitMix64(seed: 7)
        var history = ChangeHistory(countMax: 20, bytesMax: 2000)
        var reference: [Change] = []
        for index in UInt64(1)...500 {
            let changes = (0..<Int.random(in: 0...3, using: &random)).map { _ in
                put(index, ["a", "b", "ab", "c"].randomElement(using: &random)!,
                    String(repeating: "v", count: Int.random(in: 0...40, using: &random)))
            }
            history.append(index: index, changes)
            reference += changes
            let after = UInt64.random(in: 0...index, using: &random)
            let scope: ChangeHistory.Scope = Bool.random(using: &random) ? .prefix(Array("a".utf8)) : .key(Array("c".utf8))
            let expected = reference.filter { $0.index > after && scope.contains($0.key) }
            switch history.since(after, in: scope) {
            case .success(let served): XCTAssertEqual(served, expected, "after \(after) at \(index)")
            case .failure(let compacted):
                XCTAssertLessThan(after, history.compactedThrough)
                XCTAssertEqual(compacted.reread, index)
                XCTAssertTrue(reference.contains { $0.index > after && $0.index <= history.compactedThrough },
                              "refused \(after) though nothing after it was dropped")
            }
        }
    }
}
