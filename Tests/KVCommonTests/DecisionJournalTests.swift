@testable import KVCommon
import XCTest

final class DecisionJournalTests: XCTestCase {
    private let commit5 = DecisionRecord.commit(seq: 5, participants: ["r1", "r2"])

    /// A compaction copies every COMMIT without END into a new generation and deletes the old one only once the
    /// copy is durable.
    func testCompactionDeletesTheOldGenerationOnlyOnceTheCopyIsDurable() {
        var journal = DecisionJournal(recovered: [], compactBytes: 1)
        let actions = journal.commit(seq: 5, participants: ["r1", "r2"])
        XCTAssertEqual(actions, [.append([commit5], forced: .commit(5)), .rotate(generation: 2),
                                 .append([commit5], forced: .compaction(2))])
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
        XCTAssertEqual(actions, [.rotate(generation: 3), .append([commit5], forced: .compaction(3))])
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
}
