import Foundation
import KVCommon
import KVRuntime
@testable import KVReplica
import Logging
import XCTest

/// A replica's files on a real temporary directory: what start-up rebuilds from segments and snapshots, and
/// what it refuses (a damaged snapshot, a sealed segment with a damaged record) instead of serving from.
final class ReplicaStorageTests: XCTestCase {
    private var directory = ""
    private let logger = Logger(label: "test")

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "kv-storage-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Appends `records` to segment `generation` as one batch, durably.
    private func appendSegment(_ generation: UInt64, _ records: [ReplicaRecord]) throws {
        let file = try LogFile(path: ReplicaStorage.segmentPath(directory, generation)) { _, _ in }
        try file.append(framed: records.flatMap { LogFile.frame($0.encoded()) })
        try file.sync()
    }

    private func put(_ seq: UInt64, _ key: String, _ value: String) -> [ReplicaRecord] {
        [.prepare(seq: seq, op: .put(key: Array(key.utf8), value: Array(value.utf8))), .commit(seq: seq)]
    }

    private func open() throws -> (Participant, ReplicaStorage.Opened) {
        var participant = Participant(server: "r1")
        let opened = try ReplicaStorage.open(directory: directory, into: &participant, logger: logger)
        return (participant, opened)
    }

    private func value(_ participant: Participant, _ key: String) -> String? {
        participant.store[Array(key.utf8)].map { String(decoding: $0.value, as: UTF8.self) }
    }

    func testSegmentsAndASnapshotRebuildTheSameState() throws {
        try appendSegment(1, put(1, "a", "1") + put(2, "b", "2"))
        let (first, _) = try open()
        _ = try ReplicaStorage.writeSnapshot(first, generation: 2, directory: directory)
        try appendSegment(2, put(3, "a", "3"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ReplicaStorage.segmentPath(directory, 1)),
                       "the snapshot makes segment 1 obsolete")
        let (second, opened) = try open()
        XCTAssertEqual(value(second, "a"), "3")
        XCTAssertEqual(value(second, "b"), "2")
        XCTAssertEqual(second.store[Array("a".utf8)]?.version, 3)
        XCTAssertEqual(second.store[Array("a".utf8)]?.created, 1)
        XCTAssertEqual(opened.generation, 2)
        XCTAssertTrue(opened.report.contains("restored 2 keys from snapshot 2"), opened.report)
    }

    /// A snapshot whose bytes changed fails its checksum: start-up refuses rather than serve a state it cannot
    /// vouch for (the operator restores the replica or lets state transfer rebuild it).
    func testADamagedSnapshotRefusesStartUp() throws {
        try appendSegment(1, put(1, "a", "1"))
        let (state, _) = try open()
        _ = try ReplicaStorage.writeSnapshot(state, generation: 2, directory: directory)
        let path = ReplicaStorage.snapshotPath(directory, 2)
        var bytes = try FileIO.readAll(path)
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try open()) { error in
            guard case StorageError.corrupt(let where_, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(where_, path)
        }
    }

    /// A crash after the snapshot's rename but before its last bytes reached the disk leaves it without a
    /// trailer: incomplete, refused.
    func testASnapshotWithoutItsTrailerRefusesStartUp() throws {
        try appendSegment(1, put(1, "a", "1") + put(2, "b", "2"))
        let (state, _) = try open()
        _ = try ReplicaStorage.writeSnapshot(state, generation: 2, directory: directory)
        let path = ReplicaStorage.snapshotPath(directory, 2)
        let bytes = try FileIO.readAll(path)
        try Data(bytes.dropLast(20)).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try open()) { error in
            guard case StorageError.corrupt(_, _, let detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(detail, "incomplete snapshot (no valid trailer)")
        }
    }

    /// A crash while a snapshot is being written leaves only its temp file: start-up removes it and rebuilds
    /// from the segments, which were not deleted yet.
    func testACrashWhileASnapshotIsWrittenLeavesTheSegmentsInCharge() throws {
        try appendSegment(1, put(1, "a", "1") + put(2, "b", "2"))
        let partial = ReplicaStorage.snapshotPath(directory, 2) + ".tmp"
        try Data(LogFile.snapshotMagic + [1, 2, 3]).write(to: URL(fileURLWithPath: partial))
        let (state, opened) = try open()
        XCTAssertEqual(value(state, "a"), "1")
        XCTAssertEqual(value(state, "b"), "2")
        XCTAssertEqual(opened.generation, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: partial), "the temp file is removed")
    }

    /// The newest segment may end in a torn batch (a crash mid-append, never acknowledged): it is cut off and
    /// the rest replays. A sealed segment may not: start-up refuses.
    func testATornTailIsDiscardedOnlyInTheNewestSegment() throws {
        try appendSegment(1, put(1, "a", "1"))
        var path = ReplicaStorage.segmentPath(directory, 1)
        let intact = try FileIO.readAll(path).count
        try appendSegment(1, put(2, "b", "2"))
        var bytes = try FileIO.readAll(path)
        try Data(bytes.dropLast(3)).write(to: URL(fileURLWithPath: path))
        let (state, opened) = try open()
        XCTAssertEqual(value(state, "a"), "1")
        XCTAssertNil(value(state, "b"), "the torn batch is not replayed")
        XCTAssertGreaterThan(opened.file.discardedTailBytes, 0)
        XCTAssertEqual(try FileIO.readAll(path).count, intact, "the torn bytes are cut off")

        try appendSegment(2, put(3, "c", "3"))
        path = ReplicaStorage.segmentPath(directory, 1)
        try appendSegment(1, put(4, "d", "4"))
        bytes = try FileIO.readAll(path)
        try Data(bytes.dropLast(3)).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try open()) { error in
            XCTAssertTrue("\(error)".contains("sealed log segment"), "\(error)")
        }
    }
}
