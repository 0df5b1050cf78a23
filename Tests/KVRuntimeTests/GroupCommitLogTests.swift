import Foundation
@testable import KVRuntime
import Logging
import XCTest

final class GroupCommitLogTests: XCTestCase {
    /// Collects values from completions, which run on the writer thread.
    private final class Collector<Value>: @unchecked Sendable {
        private let lock = NSLock()
        private var storage: [Value] = []

        func append(_ value: Value) {
            lock.lock()
            storage.append(value)
            lock.unlock()
        }

        var values: [Value] {
            lock.lock()
            defer { lock.unlock() }
            return storage
        }
    }

    private var directory = ""
    private var path: String { directory + "/group.log" }
    private let logger = Logger(label: "kv.test.group-commit")

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("kv-gcl-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(atPath: directory)
    }

    private func readBack() throws -> [[UInt8]] {
        var records: [[UInt8]] = []
        let log = try LogFile(path: path) { payload, _ in records.append(payload) }
        XCTAssertEqual(log.discardedTailBytes, 0)
        return records
    }

    private func payload(thread: Int, batch: Int, record: Int) -> [UInt8] {
        Array("t\(thread)-b\(batch)-r\(record)".utf8)
    }

    func testManyThreadsEveryCompletionRunsAndEveryRecordPersists() throws {
        let threads = 4
        let batches = 60
        let perBatch = 3
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger)
        let done = Collector<String>()
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for batch in 0..<batches {
                let records = (0..<perBatch).map { payload(thread: thread, batch: batch, record: $0) }
                group.append(records) { done.append("\(thread)-\(batch)") }
            }
        }
        group.close()
        XCTAssertEqual(done.values.count, threads * batches)
        XCTAssertEqual(Set(done.values).count, threads * batches, "each completion runs exactly once")
        XCTAssertEqual(group.counters.records, UInt64(threads * batches * perBatch))
        XCTAssertGreaterThan(group.counters.syncs, 0)
        XCTAssertLessThanOrEqual(group.counters.syncs, UInt64(threads * batches))

        let records = try readBack()
        XCTAssertEqual(records.count, threads * batches * perBatch)
        for thread in 0..<threads {
            // One thread's records keep their submission order in the file.
            let prefix = Array("t\(thread)-".utf8)
            let own = records.filter { $0.starts(with: prefix) }
            let expected = (0..<batches).flatMap { batch in
                (0..<perBatch).map { payload(thread: thread, batch: batch, record: $0) }
            }
            XCTAssertEqual(own, expected, "thread \(thread)")
        }
    }

    func testCompletionsRunInSubmissionOrder() throws {
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger)
        let order = Collector<Int>()
        for index in 0..<500 {
            let records = index % 5 == 0 ? [] : [payload(thread: 0, batch: index, record: 0)]
            group.append(records) { order.append(index) }
        }
        group.close()
        XCTAssertEqual(order.values, Array(0..<500))
        XCTAssertEqual(try readBack().count, 400)
    }

    func testCompletionRunsOnlyAfterItsRecordsAreInTheFile() throws {
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger)
        let sizes = Collector<(expected: Int, actual: Int)>()
        let path = self.path
        var expected = LogFile.magic.count
        for index in 0..<50 {
            let record = payload(thread: 0, batch: index, record: 0)
            expected += LogFile.frame(record).count
            let mustHave = expected
            group.append([record]) {
                let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
                sizes.append((mustHave, size))
            }
        }
        group.close()
        XCTAssertEqual(sizes.values.count, 50)
        for item in sizes.values { XCTAssertGreaterThanOrEqual(item.actual, item.expected) }
        XCTAssertEqual(group.sizeBytes, expected)
    }

    func testAppendAndWaitReturnsAfterTheRecordIsWritten() throws {
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger)
        group.appendAndWait([Array("one".utf8), Array("two".utf8)])
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(bytes, LogFile.magic + LogFile.batch(framed: LogFile.frame(Array("one".utf8)) + LogFile.frame(Array("two".utf8))))
        group.close()
        XCTAssertEqual(try readBack(), [Array("one".utf8), Array("two".utf8)])
    }

    func testReopenedLogKeepsEarlierRecords() throws {
        let first = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger)
        first.appendAndWait([Array("a".utf8)])
        first.close()
        var seen: [[UInt8]] = []
        let reopened = try LogFile(path: path) { payload, _ in seen.append(payload) }
        let second = GroupCommitLog(file: reopened, logger: logger)
        XCTAssertEqual(seen, [Array("a".utf8)])
        second.appendAndWait([Array("b".utf8)])
        second.close()
        XCTAssertEqual(try readBack(), [Array("a".utf8), Array("b".utf8)])
    }
    func testCallerFlushWritesOnTheCallingThreadAndRunsCompletionsThere() throws {
        // A long lazy interval, so only the explicit flush can have written the records.
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger, lazyFlushMs: 60_000)
        let ran = Collector<Bool>()
        let caller = Thread.current
        group.append([Array("x".utf8)], sync: .caller) { ran.append(Thread.current == caller) }
        group.append([Array("y".utf8)], sync: .caller) { ran.append(Thread.current == caller) }
        XCTAssertEqual(ran.values, [], "nothing is written before the caller flushes")
        let syncsBefore = group.counters.syncs
        group.flush()
        XCTAssertEqual(ran.values, [true, true], "both completions ran, on the flushing thread")
        XCTAssertEqual(group.counters.syncs, syncsBefore + 1, "one fsync for the whole batch")
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(bytes, LogFile.magic + LogFile.batch(framed: LogFile.frame(Array("x".utf8)) + LogFile.frame(Array("y".utf8))))
        group.flush()  // nothing queued: returns at once
        XCTAssertEqual(group.counters.syncs, syncsBefore + 1)
        group.close()
    }

    func testLazyRecordsAreWrittenWithoutAnyFlushCall() throws {
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger, lazyFlushMs: 20)
        group.append([Array("end".utf8)], sync: .lazy)
        let expected = LogFile.magic + LogFile.batch(framed: LogFile.frame(Array("end".utf8)))
        let deadline = Date(timeIntervalSinceNow: 10)
        var bytes: [UInt8] = []
        while Date() < deadline {
            bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            if bytes == expected { break }
            usleep(2_000)  // polling the file for the writer thread's lazy flush
        }
        XCTAssertEqual(bytes, expected, "the writer thread flushed the lazy record on its own")
        group.close()
    }

    /// An idle log's writer stops looking every lazyFlushMs and sleeps; a lazy record must still wake it.
    func testWriterSleepsWhenIdleAndALazyRecordWakesIt() throws {
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger, lazyFlushMs: 5)
        group.append([Array("first".utf8)], sync: .lazy)
        let deadline = Date(timeIntervalSinceNow: 10)
        while !group.writerIsIdle && Date() < deadline { usleep(1_000) }
        XCTAssertTrue(group.writerIsIdle, "the writer went idle after a quiet period")
        let done = expectation(description: "the lazy record's completion ran")
        group.append([Array("second".utf8)], sync: .lazy) { done.fulfill() }
        wait(for: [done], timeout: 10)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(bytes, LogFile.magic + LogFile.batch(framed: LogFile.frame(Array("first".utf8)))
            + LogFile.batch(framed: LogFile.frame(Array("second".utf8))))
        group.close()
    }

    func testLazyRecordsRideAlongWithTheNextFlush() throws {
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger, lazyFlushMs: 60_000)
        group.append([Array("lazy".utf8)], sync: .lazy)
        group.append([Array("now".utf8)], sync: .caller)
        group.flush()
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(bytes, LogFile.magic + LogFile.batch(framed: LogFile.frame(Array("lazy".utf8)) + LogFile.frame(Array("now".utf8))))
        group.close()
    }

    func testConcurrentCallerFlushesNeverInterleaveOrLoseRecords() throws {
        let threads = 4
        let batches = 80
        let group = GroupCommitLog(file: try LogFile(path: path) { _, _ in }, logger: logger, lazyFlushMs: 60_000)
        let done = Collector<String>()
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for batch in 0..<batches {
                let sync: GroupCommitLog.Sync = batch % 3 == 0 ? .writer : .caller
                group.append([payload(thread: thread, batch: batch, record: 0)], sync: sync) {
                    done.append("\(thread)-\(batch)")
                }
                if sync == .caller { group.flush() }
            }
        }
        group.close()
        XCTAssertEqual(Set(done.values).count, threads * batches, "every completion ran exactly once")
        let records = try readBack()
        XCTAssertEqual(records.count, threads * batches)
        for thread in 0..<threads {
            let own = records.filter { $0.starts(with: Array("t\(thread)-".utf8)) }
            XCTAssertEqual(own, (0..<batches).map { payload(thread: thread, batch: $0, record: 0) }, "thread \(thread)")
        }
    }
}

extension GroupCommitLog {
    /// Queues `payloads` and blocks the calling thread until they are durable.
    func appendAndWait(_ payloads: [[UInt8]]) {
        let done = DispatchSemaphore(value: 0)
        append(payloads) { done.signal() }
        done.wait()
    }
}
