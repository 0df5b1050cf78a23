import KVCommon
import XCTest

final class DecisionMemoryTests: XCTestCase {
    func testRemembersOutcomes() {
        var memory = DecisionMemory(capacity: 4)
        XCTAssertNil(memory[1])
        memory.record(1, .committed)
        memory.record(2, .aborted)
        XCTAssertEqual(memory[1], .committed)
        XCTAssertEqual(memory[2], .aborted)
        XCTAssertNil(memory[3])
        XCTAssertEqual(memory.count, 2)
        XCTAssertEqual(memory.capacity, 4)
    }

    func testBoundedCapacityEvictsOldest() {
        var memory = DecisionMemory(capacity: 3)
        for seq in UInt64(1)...4 { memory.record(seq, .committed) }
        XCTAssertEqual(memory.count, 3)
        XCTAssertNil(memory[1], "the oldest outcome is forgotten first")
        XCTAssertEqual(memory[2], .committed)
        XCTAssertEqual(memory[3], .committed)
        XCTAssertEqual(memory[4], .committed)
        memory.record(5, .aborted)
        XCTAssertNil(memory[2])
        XCTAssertEqual(memory[5], .aborted)
        XCTAssertEqual(memory.count, 3)
    }

    func testRerecordingUpdatesWithoutEvicting() {
        var memory = DecisionMemory(capacity: 2)
        memory.record(1, .aborted)
        memory.record(2, .aborted)
        memory.record(1, .committed)
        XCTAssertEqual(memory.count, 2)
        XCTAssertEqual(memory[1], .committed)
        XCTAssertEqual(memory[2], .aborted)
        // Re-recording does not refresh the age: seq 1 is still the oldest.
        memory.record(3, .committed)
        XCTAssertNil(memory[1])
        XCTAssertEqual(memory[2], .aborted)
        XCTAssertEqual(memory[3], .committed)
    }

    func testEvictionStaysCorrectAcrossManyCompactions() {
        let capacity = 7
        var memory = DecisionMemory(capacity: capacity)
        for seq in UInt64(1)...1_000 {
            memory.record(seq, seq % 3 == 0 ? .aborted : .committed)
            XCTAssertEqual(memory.count, min(Int(seq), capacity))
            let oldestKept = seq >= UInt64(capacity) ? seq - UInt64(capacity) + 1 : 1
            XCTAssertEqual(memory[oldestKept], oldestKept % 3 == 0 ? .aborted : .committed, "after \(seq)")
            if oldestKept > 1 { XCTAssertNil(memory[oldestKept - 1], "after \(seq)") }
        }
        for seq in UInt64(994)...1_000 { XCTAssertNotNil(memory[seq]) }
    }

    func testCapacityOne() {
        var memory = DecisionMemory(capacity: 1)
        memory.record(10, .aborted)
        memory.record(11, .committed)
        XCTAssertNil(memory[10])
        XCTAssertEqual(memory[11], .committed)
        XCTAssertEqual(memory.count, 1)
    }

    /// From the security review: `18446744073709551615;abrt;;` and then a memory's worth of other aborts moved
    /// the forgotten-seq watermark to the top, and every later prepare was refused as "too old", for good. The
    /// smallest seq is forgotten first, so one message cannot move the watermark past the seqs still remembered.
    func testOneHugeSeqDoesNotMoveTheWatermark() {
        var memory = DecisionMemory(capacity: 4)
        memory.record(UInt64.max, .aborted)
        for seq in UInt64(1)...20 { memory.record(seq, .aborted) }
        XCTAssertEqual(memory.maxForgottenSeq, 17, "the seqs forgotten are the smallest ones")
        XCTAssertFalse(memory.mayHaveForgotten(1_000))
        XCTAssertEqual(memory[UInt64.max], .aborted, "the largest seq is forgotten last")
        XCTAssertEqual(memory.count, 4)
        for seq in UInt64(18)...20 { XCTAssertEqual(memory[seq], .aborted) }
    }

    func testOutOfOrderSeqsForgetTheSmallestFirst() {
        var memory = DecisionMemory(capacity: 3)
        for seq: UInt64 in [50, 10, 40, 20, 30] { memory.record(seq, .committed) }
        XCTAssertNil(memory[10])
        XCTAssertNil(memory[20])
        XCTAssertEqual(memory.maxForgottenSeq, 20)
        XCTAssertEqual(Set(memory.entries.map(\.seq)), [30, 40, 50])
    }
}
