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
}
