import Foundation
import KVCommon
import KVRuntime
@testable import KVMaster
import Logging
import NIOCore
import NIOPosix
import XCTest

/// The master's decision log on a real temporary directory: forced appends become durable and are read back at
/// start, generations come back in order (so a crash between a compaction's rotate and its delete loses
/// nothing), a torn tail of the newest generation is cut off, and a damaged sealed one refuses start-up.
final class DecisionLogFilesTests: XCTestCase {
    private var directory = ""
    private let logger = Logger(label: "test")
    private var group: MultiThreadedEventLoopGroup!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "kv-decisions-\(UUID().uuidString)"
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDownWithError() throws {
        try group.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func commit(_ seq: UInt64) -> DecisionRecord {
        .commit(seq: seq, participants: ["r1", "r2"], index: seq, changes: [
            .init(index: seq, kind: .put, key: Array("k\(seq)".utf8), value: [UInt8(seq & 0xFF)], version: seq, created: seq),
        ])
    }

    /// Opens the log, runs `actions` on its loop and waits until each forced append reported durable.
    @discardableResult
    private func open(running actions: [DecisionJournal.FileAction] = []) throws -> [DecisionJournal.Generation] {
        let loop = group.next()
        let files = try DecisionLogFiles(directory: directory, loop: loop, logger: logger)
        let forced = actions.filter { if case .append(_, .some) = $0 { return true } else { return false } }.count
        let durable = expectation(description: "forced appends durable")
        durable.expectedFulfillmentCount = max(1, forced)
        if forced == 0 { durable.fulfill() }
        var tokens: [DecisionLogToken] = []
        files.onDurable = { tokens.append($0); durable.fulfill() }
        try loop.submit { for action in actions { files.execute(action) } }.wait()
        wait(for: [durable], timeout: 30)
        let recovered = files.recovered
        try loop.submit { files.close() }.wait()
        XCTAssertEqual(tokens.count, forced)
        return recovered
    }

    func testForcedAppendsAreReadBackAtTheNextStart() throws {
        let first = try open(running: [.append([commit(1)], forced: .commit(1)), .append([.end(seq: 1)], forced: nil),
                                       .append([commit(2)], forced: .commit(2))])
        XCTAssertEqual(first, [DecisionJournal.Generation(number: 1, records: [])])
        let again = try open()
        XCTAssertEqual(again, [DecisionJournal.Generation(number: 1, records: [commit(1), .end(seq: 1), commit(2)])])
    }

    /// A compaction rotates to a new generation, writes it, and only then deletes the old one. Stopped in
    /// between (a crash), both generations come back, oldest first, for the journal to rebuild from.
    func testACrashBetweenRotateAndDeleteKeepsBothGenerations() throws {
        try open(running: [.append([commit(1), commit(2)], forced: .commit(2)), .rotate(generation: 2),
                           .append([.horizon(compactedThrough: 1, lastIndex: 2), commit(2)], forced: .compaction(2))])
        let crashed = try open()
        XCTAssertEqual(crashed.map(\.number), [1, 2])
        XCTAssertEqual(crashed[0].records, [commit(1), commit(2)])
        XCTAssertEqual(crashed[1].records, [.horizon(compactedThrough: 1, lastIndex: 2), commit(2)])
        try open(running: [.delete(generation: 1)])
        XCTAssertEqual(try open().map(\.number), [2], "once deleted, the old generation is gone")
    }

    func testATornTailOfTheNewestGenerationIsCutOff() throws {
        try open(running: [.append([commit(1)], forced: .commit(1))])
        let path = DecisionLogFiles.path(directory, 1)
        let intact = try FileIO.readAll(path)
        try open(running: [.append([commit(2)], forced: .commit(2))])
        let grown = try FileIO.readAll(path)
        try Data(grown.dropLast(5)).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try open().first?.records, [commit(1)])
        XCTAssertEqual(try FileIO.readAll(path), intact)
    }

    /// Damage inside a sealed generation is not a torn append: the master refuses to start rather than decide
    /// in-doubt transactions from a log it cannot read.
    func testADamagedSealedGenerationRefusesStartUp() throws {
        try open(running: [.append([commit(1), commit(2)], forced: .commit(2)), .rotate(generation: 2),
                           .append([commit(3)], forced: .commit(3))])
        let path = DecisionLogFiles.path(directory, 1)
        var bytes = try FileIO.readAll(path)
        bytes[bytes.count - 3] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try DecisionLogFiles(directory: directory, loop: group.next(), logger: logger)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("a sealed decision log ends in a damaged record"), message)
            XCTAssertTrue(message.contains(path), message)
            // What to do, for the master (not the replica's "restore this replica").
            XCTAssertTrue(message.contains("Restore decision_log_dir from a backup"), message)
            XCTAssertFalse(message.contains("restore this replica"), message)
        }
    }
}
