import Foundation
@testable import KVCommon
import XCTest

/// `security.cluster_key_file`: the file is read and checked at start, and every problem is a configuration error
/// at the place cluster.yaml names it.
final class ClusterKeyFileTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("kv-key-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func config(keyFile: String?) throws -> ClusterConfig {
        var lines = ["master:", "  id: m1", "  listen: 127.0.0.1:9000", "  decision_log_dir: data/master", "replicas:",
                     "  - id: r1", "    host: 127.0.0.1", "    port: 7001", "    data_dir: data/r1"]
        if let keyFile { lines += ["security:", "  cluster_key_file: \(keyFile)"] }
        return try ClusterConfig.parse(lines.joined(separator: "\n") + "\n", fileName: "cluster.yaml",
                                       baseDirectory: directory.path, absolutePath: directory.path + "/cluster.yaml")
    }

    private func write(_ text: String, mode: Int) throws -> String {
        let path = directory.appendingPathComponent("cluster.key").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
        XCTAssertEqual(chmod(path, mode_t(mode)), 0)
        return path
    }

    private func assertKeyError(_ config: ClusterConfig, _ fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try config.clusterKey(), line: line) { error in
            guard case KVError.config(let file, let errorLine, let column, let message) = error else {
                return XCTFail("not a config error: \(error)", line: line)
            }
            XCTAssertTrue(file.hasSuffix("cluster.yaml"), file, line: line)
            XCTAssertEqual(errorLine, 11, line: line)
            XCTAssertEqual(column, 21, line: line)
            XCTAssertTrue(message.contains(fragment), message, line: line)
        }
    }

    func testAGoodKeyIsRead() throws {
        _ = try write(String(repeating: "0f", count: 32) + "\n", mode: 0o600)
        let key = try XCTUnwrap(try config(keyFile: "cluster.key").clusterKey())
        XCTAssertEqual(key.key(for: .master), try ClusterKey(bytes: Array(repeating: 0x0F, count: 32)).key(for: .master))
    }

    func testNoSettingMeansNoKey() throws {
        XCTAssertNil(try config(keyFile: nil).clusterKey())
    }

    func testAMissingFileIsAConfigErrorAtItsName() throws {
        assertKeyError(try config(keyFile: "keys/absent.key"), "cannot read it")
    }

    func testAFileOthersMayReadIsRefused() throws {
        _ = try write(String(repeating: "0f", count: 32), mode: 0o644)
        assertKeyError(try config(keyFile: "cluster.key"), "mode 644 lets others read the key")
    }

    func testAShortOrMalformedKeyIsRefused() throws {
        _ = try write(String(repeating: "0f", count: 16), mode: 0o600)
        assertKeyError(try config(keyFile: "cluster.key"), "at least 32 bytes")
        _ = try write("not hex at all", mode: 0o600)
        assertKeyError(try config(keyFile: "cluster.key"), "hex digits only")
    }

    func testUnknownSecurityFieldsAreRefused() {
        let text = "master:\n  id: m1\n  listen: 127.0.0.1:9000\n  decision_log_dir: d\nreplicas:\n  - id: r1\n"
            + "    host: 127.0.0.1\n    port: 1\n    data_dir: d1\nsecurity:\n  key: x\n"
        XCTAssertThrowsError(try ClusterConfig.parse(text, fileName: "cluster.yaml", baseDirectory: "/")) { error in
            XCTAssertTrue("\(error)".contains("security: unknown field 'key'"), "\(error)")
        }
    }

    /// `--cluster-key-file`: the systemd units read a copy of the key handed to their dynamic user.
    func testAHandedOverKeyFileIsReadInsteadButOnlyWhereClusterYamlAsksForAKey() throws {
        let copy = try write(String(repeating: "ab", count: 32) + "\n", mode: 0o400)
        let keyed = try config(keyFile: "/nonexistent/cluster.key")
        XCTAssertNotNil(try keyed.clusterKey(handedOver: copy))
        XCTAssertNil(try config(keyFile: nil).clusterKey(handedOver: copy), "cluster.yaml decides whether there is a key")
        XCTAssertThrowsError(try keyed.clusterKey(handedOver: copy + ".missing")) { error in
            XCTAssertTrue("\(error)".contains("--cluster-key-file"), "\(error)")
            XCTAssertTrue("\(error)".contains("cluster.yaml:11:21"), "\(error)")
        }
    }
}
