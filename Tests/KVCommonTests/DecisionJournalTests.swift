@testable import KVCommon
import XCTest

final class DecisionJournalTests: XCTestCase {
    typealias Change = ChangeHistory.Change

    private let commit5 = DecisionRecord.commit(seq: 5, participants: ["r1", "r2"], index: 1, changes: [])

    private func put(_ key: String, _ value: String = "v", seq: UInt64, index: UInt64 = 0) -> Change {
        Change(index: index, kind: .put, key: Array(key.utf8), value: Array(value.utf8), version: seq, created: seq)
    }

    /// Commits `seqs` in order, makes each durable and ends it; returns the indexes they got.
    @discardableResult
    private func commitAll(_ journal: inout DecisionJournal, _ seqs: [UInt64], end: Bool = true) -> [UInt64] {
        seqs.map { seq in
            let index = journal.commit(seq: seq, participants: ["r1"], changes: [put("k\(seq)", seq: seq)]).index
            journal.commitDurable(seq: seq)
            if end { _ = journal.end(seq: seq) }
            return index
        }
    }

    /// Everything a journal writes, as the generations a restart would find (appends to each file in order).
    private func files(after actions: [DecisionJournal.FileAction], startingAt generation: UInt64 = 1,
                       before: [DecisionJournal.Generation] = []) -> [DecisionJournal.Generation] {
        var result = before.isEmpty ? [DecisionJournal.Generation(number: generation, records: [])] : before
        for action in actions {
            switch action {
            case .append(let records, _): result[result.count - 1].records += records
            case .rotate(let number): result.append(.init(number: number, records: []))
            case .delete(let number): result.removeAll { $0.number == number }
            }
        }
        return result
    }

    /// A compaction copies every COMMIT without END into a new generation and deletes the old one only once the
    /// copy is durable.
    func testCompactionDeletesTheOldGenerationOnlyOnceTheCopyIsDurable() {
        var journal = DecisionJournal(recovered: [], compactBytes: 1)
        let actions = journal.commit(seq: 5, participants: ["r1", "r2"]).actions
        XCTAssertEqual(actions, [.append([commit5], forced: .commit(5)), .rotate(generation: 2),
                                 .append([.horizon(compactedThrough: 0, lastIndex: 1), commit5],
                                         forced: .compaction(2))])
        journal.commitDurable(seq: 5)
        XCTAssertEqual(journal.compactionDurable(generation: 2), [.delete(generation: 1)])
        XCTAssertTrue(journal.wasCommitted(5))
    }

    /// A compaction interrupted by a crash leaves two generations, the newest without (all) the copies. Start-up
    /// finishes it the same way: copy forward, make it durable, then delete, never the other way round (deleting at
    /// once left the COMMIT only in memory, and a second crash turned it into a presumed abort).
    func testStartUpFinishesAnInterruptedCompactionBeforeDeletingAnything() {
        var journal = DecisionJournal(recovered: [.init(number: 1, records: [commit5]), .init(number: 2, records: [])],
                                      compactBytes: 1 << 20)
        XCTAssertTrue(journal.wasCommitted(5))
        let actions = journal.startUp()
        XCTAssertEqual(actions, [.rotate(generation: 3),
                                 .append([.horizon(compactedThrough: 0, lastIndex: 1), commit5], forced: .compaction(3))])
        XCTAssertEqual(journal.compactionDurable(generation: 3), [.delete(generation: 1), .delete(generation: 2)])
        // One generation: nothing to do.
        var single = DecisionJournal(recovered: [.init(number: 4, records: [commit5])], compactBytes: 1 << 20)
        XCTAssertEqual(single.startUp(), [])
    }

    func testEndForgetsACommitAndIsLazy() {
        var journal = DecisionJournal(recovered: [.init(number: 1, records: [commit5])], compactBytes: 1 << 20)
        XCTAssertEqual(journal.end(seq: 5), [.append([.end(seq: 5)], forced: nil)])
        XCTAssertEqual(journal.end(seq: 5), [], "an END is written once")
        XCTAssertTrue(journal.wasCommitted(5), "recently ended commits are still known")
        XCTAssertEqual(journal.pending.count, 0)
    }

    /// Indexes follow the order of appends; a change is published only once its COMMIT is durable and every lower
    /// index is published, whatever order durability is reported in.
    func testIndexesArePublishedInOrderOnceDurable() {
        var journal = DecisionJournal(recovered: [], compactBytes: 1 << 20)
        XCTAssertEqual(journal.commit(seq: 20, participants: ["r1"], changes: [put("a", seq: 20)]).index, 1)
        XCTAssertEqual(journal.commit(seq: 10, participants: ["r1"], changes: [put("b", seq: 10)]).index, 2)
        XCTAssertTrue(journal.commitDurable(seq: 10).isEmpty, "index 2 waits for index 1")
        let published = journal.commitDurable(seq: 20)
        XCTAssertEqual(published.map(\.index), [1, 2])
        XCTAssertEqual(published.map { $0.changes.map(\.index) }, [[1], [2]], "each change carries its index")
        XCTAssertEqual(journal.history.lastIndex, 2)
        XCTAssertEqual(try journal.history.since(0, in: .prefix([])).get().map(\.key), [Array("a".utf8), Array("b".utf8)])
    }

    /// A restart rebuilds the history from the COMMIT records and issues indexes above every one of them.
    func testRestartRebuildsTheHistoryAndContinuesTheIndexes() throws {
        var journal = DecisionJournal(recovered: [], compactBytes: 1 << 20)
        var actions: [DecisionJournal.FileAction] = []
        for seq: UInt64 in [1, 2, 3] {
            let logged = journal.commit(seq: seq, participants: ["r1"], changes: [put("k\(seq)", seq: seq)])
            actions += logged.actions
            journal.commitDurable(seq: seq)
            actions += journal.end(seq: seq)
        }
        var restarted = DecisionJournal(recovered: files(after: actions), compactBytes: 1 << 20)
        XCTAssertEqual(restarted.history.lastIndex, 3)
        XCTAssertEqual(try restarted.history.since(1, in: .prefix([])).get(), try journal.history.since(1, in: .prefix([])).get())
        XCTAssertEqual(restarted.commit(seq: 9, participants: ["r1"]).index, 4)
    }

    /// A compaction carries the kept history forward (HISTORY for ended commits, COMMIT for the others), so a
    /// restart from the new generation alone serves the same resume points; the horizon keeps the last index even
    /// when its transaction changed nothing.
    func testCompactionCarriesTheHistoryAndTheLastIndex() throws {
        var journal = DecisionJournal(recovered: [], compactBytes: 1 << 20, historyMax: 3)
        commitAll(&journal, [1, 2, 3, 4, 5])
        _ = journal.commit(seq: 6, participants: ["r1"], changes: [put("open", seq: 6)])
        journal.commitDurable(seq: 6)
        _ = journal.commit(seq: 7, participants: ["r1"], changes: [])
        journal.commitDurable(seq: 7)
        _ = journal.end(seq: 7)
        XCTAssertEqual(journal.history.compactedThrough, 3, "three changes kept: indexes 4, 5 and 6")
        let carried = journal.compactNowForTest()
        guard case .append(let records, forced: .compaction?) = carried.last else { return XCTFail("\(carried)") }
        XCTAssertEqual(records.first, .horizon(compactedThrough: 3, lastIndex: 7))
        XCTAssertEqual(records.dropFirst().map(Self.kind), ["history 4", "history 5", "commit 6"])
        var restarted = DecisionJournal(recovered: [.init(number: 2, records: records)], compactBytes: 1 << 20,
                                        historyMax: 3)
        XCTAssertEqual(try restarted.history.since(3, in: .prefix([])).get(), try journal.history.since(3, in: .prefix([])).get())
        XCTAssertEqual(restarted.history.since(2, in: .prefix([])), .failure(.init(oldestKept: 4, reread: 7)))
        XCTAssertEqual(Set(restarted.pending.keys), [6], "the commit without END is still pending")
        XCTAssertEqual(restarted.commit(seq: 8, participants: ["r1"]).index, 8, "index 7 is never issued again")
    }

    /// A crash after a compaction's rotation but before its copy was written leaves the old generation whole and a
    /// new one with only a horizon: the old one's changes above that horizon are all still there.
    func testACompactionCutShortLosesNoChange() throws {
        var journal = DecisionJournal(recovered: [], compactBytes: 1 << 20)
        var actions: [DecisionJournal.FileAction] = []
        for seq: UInt64 in 1...4 {
            let logged = journal.commit(seq: seq, participants: ["r1"], changes: [put("k\(seq)", seq: seq)])
            actions += logged.actions
            journal.commitDurable(seq: seq)
            actions += journal.end(seq: seq)
        }
        let old = files(after: actions)
        let cut = old + [.init(number: 2, records: [.horizon(compactedThrough: 0, lastIndex: 4)])]
        let restarted = DecisionJournal(recovered: cut, compactBytes: 1 << 20)
        XCTAssertEqual(try restarted.history.since(0, in: .prefix([])).get().count, 4)
    }

    /// The trigger counts what was appended since the last compaction, not what it copied in: a history larger than
    /// `compactBytes` does not make every append compact.
    func testAHistoryLargerThanTheCompactionSizeDoesNotCompactEveryAppend() {
        var journal = DecisionJournal(recovered: [], compactBytes: 4096)
        var compactions = 0
        for seq: UInt64 in 1...200 {
            let logged = journal.commit(seq: seq, participants: ["r1"], changes: [put("k\(seq)", String(repeating: "x", count: 200), seq: seq)])
            compactions += logged.actions.filter { if case .rotate = $0 { return true } else { return false } }.count
            journal.commitDurable(seq: seq)
            _ = journal.end(seq: seq)
            if let generation = journal.compacting { _ = journal.compactionDurable(generation: generation) }
        }
        XCTAssertGreaterThan(compactions, 0)
        XCTAssertLessThan(compactions, 20, "about one compaction per 4096 bytes appended, not one per append")
    }

    private static func kind(_ record: DecisionRecord) -> String {
        switch record {
        case .commit(let seq, _, _, _): return "commit \(seq)"
        case .history(let index, _): return "history \(index)"
        case .end(let seq): return "end \(seq)"
        case .horizon: return "horizon"
        }
    }
}
