import Foundation
@testable import KVRuntime
import XCTest

final class BackgroundThreadTests: XCTestCase {
    /// The nice value of thread `tid` of this process, field 19 of /proc/self/task/<tid>/stat.
    private func niceValue(_ tid: id_t) throws -> Int {
        let stat = try String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8)
        // The command name (field 2) may hold spaces; the fields after its closing parenthesis are plain.
        let fields = stat[stat.range(of: ")", options: .backwards)!.upperBound...].split(separator: " ")
        return Int(fields[16])!
    }

    func testCurrentThreadIDIsATaskOfThisProcess() throws {
        let tid = try XCTUnwrap(BackgroundThread.currentThreadID())
        XCTAssertTrue(FileManager.default.fileExists(atPath: "/proc/self/task/\(tid)"))
    }

    func testJobRunsNamedAndAtLowerPriorityThanItsStarter() throws {
        let starter = try XCTUnwrap(BackgroundThread.currentThreadID())
        let starterNice = try niceValue(starter)
        let done = expectation(description: "background job ran")
        let seen = LockedBox<(tid: id_t?, nice: Int?, name: String?)>((nil, nil, nil))
        BackgroundThread.start(name: "kv-test-bg") {
            let tid = BackgroundThread.currentThreadID()
            let nice = tid.flatMap { try? self.niceValue($0) }
            let name = tid.flatMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
            seen.set((tid, nice, name))
            done.fulfill()
        }
        wait(for: [done], timeout: 10)
        let result = seen.get()
        XCTAssertNotEqual(result.tid, starter, "the job must run on a thread of its own")
        XCTAssertEqual(result.nice, min(19, starterNice + Int(BackgroundThread.niceIncrement)))
        XCTAssertEqual(result.name?.trimmingCharacters(in: .whitespacesAndNewlines), "kv-test-bg")
        XCTAssertEqual(try niceValue(starter), starterNice, "the starting thread keeps its priority")
    }
}

/// A value shared between the test thread and the job.
private final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ newValue: Value) { lock.lock(); value = newValue; lock.unlock() }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
}
