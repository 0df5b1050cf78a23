import Foundation
@testable import KVCommon
@testable import KVMaster
import KVRuntime
import XCTest

/// `master-state` on a real temporary directory: written atomically and read back whole, the text files of
/// earlier versions read once and removed by the first write, and damage refused with what to do about it.
final class MasterStateFileTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "kv-master-state-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private var sample: MasterState {
        let r1 = ClusterConfig.Replica(id: "r1", host: "10.0.0.1", port: 7001, dataDir: "/var/lib/kv/r1")
        return MasterState(seqEpoch: 7, configEpoch: 3, membershipEpoch: 2, presumeAbortFrom: 6_000_000_000,
                           members: [.init(replica: r1, joinedAt: 5_000_000_123)])
    }

    func testANewDirectoryHasNoStateAndAWrittenOneReadsBack() throws {
        let file = MasterStateFile(directory: directory)
        XCTAssertNil(try file.read())
        try file.write(sample)
        XCTAssertEqual(try file.read(), sample)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["master-state"],
                       "no temp file is left behind")
    }

    func testTheEpochFilesOfEarlierVersionsAreReadOnceAndRemovedByTheFirstWrite() throws {
        try Data("12\n".utf8).write(to: URL(fileURLWithPath: directory + "/epoch"))
        try Data("4\n".utf8).write(to: URL(fileURLWithPath: directory + "/config-epoch"))
        let file = MasterStateFile(directory: directory)
        let legacy = try XCTUnwrap(try file.read())
        XCTAssertEqual(legacy.seqEpoch, 12)
        XCTAssertEqual(legacy.configEpoch, 4)
        try file.write(legacy)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["master-state"])
        XCTAssertEqual(try file.read()?.seqEpoch, 12)
    }

    func testADamagedFileIsRefusedSayingWhatToDo() throws {
        let file = MasterStateFile(directory: directory)
        try file.write(sample)
        var bytes = try FileIO.readAll(file.path)
        bytes[bytes.count - 5] ^= 0x20
        try Data(bytes).write(to: URL(fileURLWithPath: file.path))
        XCTAssertThrowsError(try file.read()) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("\(file.path) is damaged") && message.contains("restore it from a backup"),
                          message)
        }
        try Data("twelve\n".utf8).write(to: URL(fileURLWithPath: directory + "/epoch"))
        try FileManager.default.removeItem(atPath: file.path)
        XCTAssertThrowsError(try file.read()) { error in
            XCTAssertTrue("\(error)".contains("does not hold an epoch number ('twelve')"), "\(error)")
        }
    }
}
