import Foundation
import KVCommon
import KVRuntime
import XCTest

final class LogFileTests: XCTestCase {
    private var directory = ""
    private var path: String { directory + "/replica.log" }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("kv-logfile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(atPath: directory)
    }

    /// Opens the log, returning the file and every (payload, offset) it reported.
    private func open() throws -> (log: LogFile, records: [[UInt8]], offsets: [Int]) {
        var records: [[UInt8]] = []
        var offsets: [Int] = []
        let log = try LogFile(path: path) { payload, offset in
            records.append(payload)
            offsets.append(offset)
        }
        return (log, records, offsets)
    }

    private func payloads(_ count: Int, tag: String = "record") -> [[UInt8]] {
        (0..<count).map { Array("\(tag)-\($0)-".utf8) + [UInt8](repeating: UInt8($0 & 0xFF), count: $0 * 3) }
    }

    /// Writes `payloads` to a fresh log, one batch each, and returns the byte offset of each frame (its batch
    /// starts `LogFile.batchHeaderBytes` before).
    @discardableResult
    private func write(_ payloads: [[UInt8]]) throws -> [Int] {
        let (log, _, _) = try open()
        var offsets: [Int] = []
        for payload in payloads {
            offsets.append(log.sizeBytes + LogFile.batchHeaderBytes)
            try log.append(framed: LogFile.frame(payload))
        }
        try log.sync()
        return offsets
    }

    private func fileBytes() throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    private func writeFile(_ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    // MARK: - Tests

    func testNewLogHasOnlyTheHeader() throws {
        let (log, records, _) = try open()
        XCTAssertEqual(records, [])
        XCTAssertEqual(log.sizeBytes, LogFile.magic.count)
        XCTAssertEqual(log.discardedTailBytes, 0)
        XCTAssertEqual(try fileBytes(), LogFile.magic)
    }

    func testFrameLayout() {
        let payload = Array("123456789".utf8)
        XCTAssertEqual(LogFile.frame(payload), [9, 0, 0, 0, 0x83, 0x92, 0x06, 0xE3] + payload)
    }

    /// The snapshot writer frames records in place, many to a buffer after the magic; a scan must read back
    /// exactly the records, each framed as `frame(_:)` frames it alone.
    func testFramesAppendedInPlaceScanBack() throws {
        let records: [SnapshotRecord] = [
            .header(generation: 3, lastCommittedSeq: 9, maxForgottenSeq: 2, joined: true),
            .entry(key: Array("k".utf8), value: [UInt8](repeating: 0x5C, count: 5000), version: 9, created: 4),
            .decided(seq: 8, committed: false),
            .trailer(entries: 1, prepared: 0, decided: 1, digest: 0xDEAD_BEEF),
        ]
        var writer = BinaryWriter(appendingTo: LogFile.snapshotMagic)
        var expected = LogFile.snapshotMagic
        for record in records {
            LogFile.appendFrame(to: &writer) { record.encode(into: &$0) }
            expected += LogFile.frame(record.encoded())
        }
        XCTAssertEqual(writer.bytes, expected)
        var decoded: [SnapshotRecord] = []
        let valid = try LogFile.scanFrames(writer.bytes, path: "mem", magic: LogFile.snapshotMagic) { payload, _ in
            decoded.append(try SnapshotRecord.decode(payload))
        }
        XCTAssertEqual(valid, writer.bytes.count)
        XCTAssertEqual(decoded, records)
    }

    func testRecordsSurviveReopenInOrder() throws {
        let written = payloads(20)
        let offsets = try write(written)
        let (log, records, reported) = try open()
        XCTAssertEqual(records, written)
        XCTAssertEqual(reported, offsets)
        XCTAssertEqual(log.discardedTailBytes, 0)
        XCTAssertEqual(log.sizeBytes, try fileBytes().count)

        // Appending after a reopen continues the same file.
        try log.append(framed: LogFile.frame(Array("later".utf8)))
        try log.sync()
        XCTAssertEqual(try open().records, written + [Array("later".utf8)])
    }

    func testTornLastBatchIsDiscarded() throws {
        let written = payloads(5)
        let offsets = try write(written)
        let full = try fileBytes()
        let lastBatch = offsets[4] - LogFile.batchHeaderBytes
        // Cuts inside the payload, inside the frame header, and inside the batch header.
        for cut in [1, 3, LogFile.frameHeaderBytes + 1, full.count - offsets[4] - 1, full.count - lastBatch - 5] {
            try writeFile(Array(full.dropLast(cut)))
            let (log, records, _) = try open()
            XCTAssertEqual(records, Array(written.prefix(4)), "cut \(cut)")
            XCTAssertEqual(log.discardedTailBytes, full.count - cut - lastBatch, "cut \(cut)")
            XCTAssertGreaterThan(log.discardedTailBytes, 0)
            XCTAssertEqual(log.sizeBytes, lastBatch)
            XCTAssertEqual(try fileBytes().count, lastBatch, "the torn tail is cut off the file")
        }
    }

    /// A crash can leave the whole length of the last batch in the file with some of its pages never written
    /// (zeroes): still a torn tail, however intact the bytes after the hole look.
    func testLastBatchWithAHoleIsATornTail() throws {
        let written = payloads(3)
        let offsets = try write(written)
        var bytes = try fileBytes()
        for index in offsets[2]..<(offsets[2] + LogFile.frameHeaderBytes) { bytes[index] = 0 }
        try writeFile(bytes)
        let (log, records, _) = try open()
        XCTAssertEqual(records, Array(written.prefix(2)))
        XCTAssertEqual(log.sizeBytes, offsets[2] - LogFile.batchHeaderBytes)
    }

    func testDamagedBatchHeaderInMiddleIsCorruption() throws {
        let offsets = try write(payloads(3))
        var bytes = try fileBytes()
        let batch = offsets[1] - LogFile.batchHeaderBytes
        bytes[batch + 5] ^= 0x01  // the body length, which the header's checksum covers
        try writeFile(bytes)
        XCTAssertThrowsError(try open()) { error in
            guard case StorageError.corrupt(_, let offset, _) = error else {
                return XCTFail("expected StorageError.corrupt, got \(error)")
            }
            XCTAssertEqual(offset, batch)
        }
    }

    /// A crash tears the append of a large record whose value happens to hold the bytes of an intact frame (a
    /// client may store anything). That is still a torn tail of one unacknowledged write, not corruption.
    func testTornAppendWhoseValueHoldsAFrameIsATornTail() throws {
        let written = payloads(2)
        try write(written)
        let intactEnd = try fileBytes().count
        let embedded = LogFile.frame(ReplicaRecord.commit(seq: 42).encoded())
        let value = [UInt8](repeating: 0x61, count: 1000) + embedded + [UInt8](repeating: 0x62, count: 1000)
        let large = ReplicaRecord.prepare(seq: 43, op: .put(key: Array("k".utf8), value: value)).encoded()
        do {
            let (log, _, _) = try open()
            try log.append(framed: LogFile.frame(large))
            try log.sync()
        }
        let full = try fileBytes()
        let tornAt = full.count - 500  // past the embedded frame, before the end of the record
        try writeFile(Array(full.prefix(tornAt)))
        let (log, records, _) = try open()
        XCTAssertEqual(records, written)
        XCTAssertEqual(log.discardedTailBytes, tornAt - intactEnd)
        XCTAssertEqual(try fileBytes().count, intactEnd)
    }

    /// A log of the first, unbatched format (KVLOG01) reads back, torn tail rule included, and appends continue
    /// in that format, so an upgraded replica keeps its segment until the next rotation starts a batched one.
    func testLegacyUnbatchedLogReadsBackAndKeepsItsFormat() throws {
        let written = payloads(3)
        try writeFile(LogFile.legacyMagic + written.flatMap(LogFile.frame) + [9, 0, 0])
        do {
            let (log, records, _) = try open()
            XCTAssertEqual(records, written)
            XCTAssertFalse(log.batched)
            XCTAssertEqual(log.discardedTailBytes, 3)
            try log.append(framed: LogFile.frame(Array("later".utf8)))
            try log.sync()
        }
        XCTAssertEqual(try fileBytes(), LogFile.legacyMagic + (written + [Array("later".utf8)]).flatMap(LogFile.frame))
        XCTAssertEqual(try open().records, written + [Array("later".utf8)])
    }

    func testAppendAfterTornTailRecovery() throws {
        let written = payloads(3)
        try write(written)
        try writeFile(Array(try fileBytes().dropLast(2)))
        do {
            let (log, records, _) = try open()
            XCTAssertEqual(records, Array(written.prefix(2)))
            try log.append(framed: LogFile.frame(Array("after".utf8)))
            try log.sync()
        }
        let (log, records, _) = try open()
        XCTAssertEqual(records, Array(written.prefix(2)) + [Array("after".utf8)])
        XCTAssertEqual(log.discardedTailBytes, 0)
    }

    func testFlippedByteInMiddleRecordIsCorruption() throws {
        let offsets = try write(payloads(4))
        var bytes = try fileBytes()
        bytes[offsets[1] + LogFile.frameHeaderBytes + 2] ^= 0x40
        try writeFile(bytes)
        XCTAssertThrowsError(try open()) { error in
            guard case StorageError.corrupt(let errorPath, let offset, let detail) = error else {
                return XCTFail("expected StorageError.corrupt, got \(error)")
            }
            XCTAssertEqual(errorPath, path)
            XCTAssertEqual(offset, offsets[1])
            XCTAssertFalse(detail.isEmpty)
            let text = String(describing: error)
            XCTAssertTrue(text.contains(path), text)
            XCTAssertTrue(text.contains("byte offset \(offsets[1])"), text)
        }
        XCTAssertEqual(try fileBytes(), bytes, "a corrupt log is left untouched")
    }

    func testDamagedLengthInMiddleIsCorruption() throws {
        let offsets = try write(payloads(3))
        let intact = try fileBytes()
        // Implausible length; length past the end of the file; shorter length; zero length.
        let damages: [(index: Int, value: UInt8)] = [(3, 0x7F), (0, intact[offsets[1]] ^ 0x40), (0, 2), (0, 0)]
        for damage in damages {
            var bytes = intact
            bytes[offsets[1] + damage.index] = damage.value
            try writeFile(bytes)
            XCTAssertThrowsError(try open(), "\(damage)") { error in
                guard case StorageError.corrupt(_, let offset, _) = error else {
                    return XCTFail("expected StorageError.corrupt, got \(error)")
                }
                XCTAssertEqual(offset, offsets[1], "\(damage)")
            }
            XCTAssertEqual(try fileBytes(), bytes, "a corrupt log is left untouched")
        }
    }

    func testImplausibleHeaderAtTheVeryEndIsATornTail() throws {
        let written = payloads(2)
        let offsets = try write(written)
        try writeFile(try fileBytes() + [0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3, 4])
        let (log, records, _) = try open()
        XCTAssertEqual(records, written)
        XCTAssertEqual(log.discardedTailBytes, LogFile.frameHeaderBytes)
        XCTAssertEqual(log.sizeBytes, offsets[1] + LogFile.frame(written[1]).count)
    }

    func testUndecodableRecordIsCorruption() throws {
        let offsets = try write([
            ReplicaRecord.commit(seq: 1).encoded(), [0xEE, 0x01], ReplicaRecord.abort(seq: 2).encoded(),
        ])
        XCTAssertThrowsError(try LogFile(path: path) { payload, _ in _ = try ReplicaRecord.decode(payload) }) { error in
            guard case StorageError.corrupt(_, let offset, let detail) = error else {
                return XCTFail("expected StorageError.corrupt, got \(error)")
            }
            XCTAssertEqual(offset, offsets[1])
            XCTAssertTrue(detail.contains("record"), detail)
        }
    }

    func testBadHeader() throws {
        for contents in [Array("NOTALOG\n".utf8) + LogFile.frame([1]), Array("KVLOG".utf8), Array("KVLOG03\n".utf8)] {
            try writeFile(contents)
            XCTAssertThrowsError(try open()) { error in
                guard case StorageError.badHeader(let errorPath) = error else {
                    return XCTFail("expected StorageError.badHeader, got \(error)")
                }
                XCTAssertEqual(errorPath, path)
                XCTAssertTrue(String(describing: error).contains("bad header"))
            }
        }
    }

    func testEmptyExistingFileGetsAHeader() throws {
        try writeFile([])
        let (log, records, _) = try open()
        XCTAssertEqual(records, [])
        XCTAssertEqual(log.sizeBytes, LogFile.magic.count)
        XCTAssertEqual(try fileBytes(), LogFile.magic)
    }

    func testMissingDirectoryReportsIOError() {
        XCTAssertThrowsError(try LogFile(path: directory + "/no/such/dir/log") { _, _ in }) { error in
            guard case StorageError.io(let operation, let errorPath, let code) = error else {
                return XCTFail("expected StorageError.io, got \(error)")
            }
            XCTAssertEqual(operation, "open")
            XCTAssertEqual(errorPath, directory + "/no/such/dir/log")
            XCTAssertEqual(code, ENOENT)
        }
    }
}
