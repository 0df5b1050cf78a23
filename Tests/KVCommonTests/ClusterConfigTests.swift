import Foundation
@testable import KVCommon
import XCTest

final class ClusterConfigTests: XCTestCase {
    /// A valid configuration; the line numbers in the tests below refer to these lines (1-based).
    private let validLines = [
        "master:",                          // 1
        "  id: m1",                         // 2
        "  listen: 127.0.0.1:9000",         // 3
        "  decision_log_dir: data/master",  // 4
        "replicas:",                        // 5
        "  - id: r1",                       // 6
        "    host: 127.0.0.1",              // 7
        "    port: 7001",                   // 8
        "    data_dir: data/r1",            // 9
        "  - id: r2",                       // 10
        "    host: 127.0.0.1",              // 11
        "    port: 7002",                   // 12
        "    data_dir: ./data/r2",          // 13
    ]

    private func parse(_ text: String) throws -> ClusterConfig {
        try ClusterConfig.parse(text, fileName: "cluster.yaml", baseDirectory: "/base")
    }

    /// The valid text with line `number` (1-based) replaced by `replacement` lines (none removes it).
    private func text(replacing number: Int, with replacement: String...) -> String {
        var lines = validLines
        lines.replaceSubrange((number - 1)..<number, with: replacement)
        return lines.joined(separator: "\n") + "\n"
    }

    private func assertConfigError(_ text: String, line: Int, column: Int, _ fragments: String...,
                                   file: StaticString = #filePath, line testLine: UInt = #line) {
        do {
            let config = try parse(text)
            XCTFail("parsed as \(config)", file: file, line: testLine)
        } catch KVError.config(let fileName, let errorLine, let errorColumn, let message) {
            XCTAssertEqual(fileName, "cluster.yaml", file: file, line: testLine)
            XCTAssertEqual(errorLine, line, "line of: \(message)", file: file, line: testLine)
            XCTAssertEqual(errorColumn, column, "column of: \(message)", file: file, line: testLine)
            for fragment in fragments {
                XCTAssertTrue(message.contains(fragment),
                              "\(message.debugDescription) lacks \(fragment.debugDescription)",
                              file: file, line: testLine)
            }
        } catch {
            XCTFail("expected KVError.config, got \(error)", file: file, line: testLine)
        }
    }

    // MARK: - Valid files

    func testRepositoryClusterYAMLLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let config = try ClusterConfig.load(path: root + "/cluster.yaml")
        XCTAssertEqual(config.path, root + "/cluster.yaml")
        XCTAssertEqual(config.replicas.count, 3)
        XCTAssertEqual(Set(config.replicas.map(\.id)).count, 3, "replica ids are distinct")
        for replica in config.replicas {
            XCTAssertTrue(replica.dataDir.hasPrefix(root + "/"), "\(replica.dataDir) not under \(root)")
            XCTAssertTrue((1...65_535).contains(replica.port))
            XCTAssertEqual(config.replica(id: replica.id), replica)
        }
        XCTAssertTrue(config.master.decisionLogDir.hasPrefix(root + "/"), config.master.decisionLogDir)
        XCTAssertNil(config.replica(id: "no-such-replica"))
    }

    func testLoadOfMissingFileNamesIt() {
        XCTAssertThrowsError(try ClusterConfig.load(path: "/nonexistent/dir/cluster.yaml")) { error in
            XCTAssertEqual(error as? KVError, .config(file: "/nonexistent/dir/cluster.yaml", line: 1, column: 1,
                                                      message: "cannot read the file (does it exist?)"))
        }
    }

    func testValidTextParsesWithDefaultsAndResolvedPaths() throws {
        let config = try parse(text(replacing: 1, with: "master:"))
        XCTAssertEqual(config.path, "cluster.yaml")
        XCTAssertEqual(config.master.id, "m1")
        XCTAssertEqual(config.master.listen, .tcp(host: "127.0.0.1", port: 9000))
        XCTAssertEqual(config.master.decisionLogDir, "/base/data/master")
        XCTAssertEqual(config.master.workerThreads, 128)
        XCTAssertEqual(config.replicas.map(\.id), ["r1", "r2"])
        XCTAssertEqual(config.replicas.map(\.address), ["127.0.0.1:7001", "127.0.0.1:7002"])
        XCTAssertEqual(config.replicas.map(\.dataDir), ["/base/data/r1", "/base/data/r2"])
        XCTAssertEqual(config.timeouts, ClusterConfig.Timeouts())
        XCTAssertEqual(config.limits, ClusterConfig.Limits())
    }

    func testOptionalSectionsAndListenForms() throws {
        var lines = validLines
        lines[2] = "  listen: run/master.sock"
        lines[3] = "  decision_log_dir: /var/lib/kv/master"
        lines += ["timeouts:", "  prepare_timeout_ms: 150", "limits:", "  key_bytes_max: 16"]
        let config = try parse(lines.joined(separator: "\n"))
        XCTAssertEqual(config.master.listen, .unix(path: "/base/run/master.sock"))
        XCTAssertEqual(config.master.decisionLogDir, "/var/lib/kv/master")
        XCTAssertEqual(config.timeouts.prepareTimeoutMs, 150)
        XCTAssertEqual(config.timeouts.commitTimeoutMs, 2000)
        XCTAssertEqual(config.limits.keyBytesMax, 16)
        XCTAssertEqual(config.limits.wireRequestBytesMax, 3 * (16 + (1 << 20)) + 64)
        XCTAssertEqual(try parse(text(replacing: 3, with: "  listen: \"[::1]:9000\"")).master.listen,
                       .tcp(host: "[::1]", port: 9000))
    }

    // MARK: - Mistakes

    func testBadYAMLSyntax() {
        assertConfigError(text(replacing: 7, with: "    host: [127.0.0.1"), line: 8, column: 9, "YAML")
        assertConfigError(text(replacing: 7, with: "\thost: 127.0.0.1"), line: 7, column: 1, "YAML")
    }

    func testDuplicateReplicaID() {
        assertConfigError(text(replacing: 10, with: "  - id: r1"), line: 10, column: 5,
                          "replicas[1].id 'r1' is already used by replicas[0]")
    }

    func testDuplicateAddress() {
        assertConfigError(text(replacing: 12, with: "    port: 7001"), line: 10, column: 5,
                          "replicas[1] address 127.0.0.1:7001 is already used by replicas[0]")
    }

    func testDuplicateDataDirAfterResolving() {
        assertConfigError(text(replacing: 13, with: "    data_dir: ./data/r1"), line: 10, column: 5,
                          "replicas[1].data_dir is already used by replicas[0]")
    }

    func testBadPorts() {
        for port in ["0", "70000", "abc", "-1", "7001.5", "''"] {
            assertConfigError(text(replacing: 12, with: "    port: \(port)"), line: 12, column: 11,
                              "replicas[1].port must be 1-65535")
        }
    }

    func testMissingFields() {
        assertConfigError(text(replacing: 13), line: 10, column: 5, "replicas[1]: missing field 'data_dir'")
        assertConfigError(text(replacing: 12), line: 10, column: 5, "replicas[1]: missing field 'port'")
        assertConfigError(text(replacing: 3), line: 2, column: 3, "master: missing field 'listen'")
        let noMaster = validLines[4...].joined(separator: "\n")
        assertConfigError(noMaster, line: 1, column: 1, "cluster.yaml: missing field 'master'")
    }

    func testEmptyValue() {
        assertConfigError(text(replacing: 11, with: "    host: ''"), line: 11, column: 11,
                          "replicas[1].host must not be empty")
    }

    func testUnknownField() {
        assertConfigError(text(replacing: 13, with: "    dta_dir: data/r2"), line: 13, column: 5,
                          "replicas[1]: unknown field 'dta_dir'", "known: id, host, port, data_dir")
        assertConfigError(text(replacing: 3, with: "  listne: 127.0.0.1:9000"), line: 3, column: 3,
                          "master: unknown field 'listne'")
        assertConfigError(text(replacing: 5, with: "replica:"), line: 5, column: 1,
                          "cluster.yaml: unknown field 'replica'")
    }

    func testDuplicateKeyInOneMapping() {
        assertConfigError(text(replacing: 12, with: "    port: 7002", "    port: 7003"), line: 13, column: 5,
                          "replicas[1]: field 'port' appears twice")
        assertConfigError(text(replacing: 2, with: "  id: m1", "  id: m2"), line: 3, column: 3,
                          "master: field 'id' appears twice")
    }

    func testEmptyReplicasList() {
        let lines = validLines[0..<4] + ["replicas: []"]
        assertConfigError(lines.joined(separator: "\n"), line: 5, column: 11,
                          "replicas must list at least one replica")
    }

    func testWrongNodeKinds() {
        let scalarReplicas = (validLines[0..<4] + ["replicas: r1"]).joined(separator: "\n")
        assertConfigError(scalarReplicas, line: 5, column: 11, "replicas must be a list")
        assertConfigError((validLines[0..<9] + ["  - r2"]).joined(separator: "\n"), line: 10, column: 5,
                          "replicas[1] must be a mapping, found a scalar")
        assertConfigError(text(replacing: 2, with: "  id: [m1]"), line: 2, column: 7, "master.id must be a scalar")
        assertConfigError("- a\n- b\n", line: 1, column: 1, "cluster.yaml must be a mapping, found a list")
    }

    func testEmptyFile() {
        assertConfigError("", line: 1, column: 1, "the file is empty")
        assertConfigError("# only a comment\n", line: 1, column: 1, "the file is empty")
    }

    func testBadListenAddress() {
        for listen in ["localhost", ":9000", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", "127.0.0.1:"] {
            assertConfigError(text(replacing: 3, with: "  listen: \"\(listen)\""), line: 3, column: 11,
                              "master.listen must be a socket path (with a '/') or host:port")
        }
    }

    func testLinkTLSSectionResolvesItsFilesAndNeedsAClusterKey() throws {
        let tls = ["security:", "  cluster_key_file: keys/cluster.key", "  tls:", "    cert_file: tls/node.crt",
                   "    key_file: /etc/kv/node.key", "    ca_file: ./tls/ca.crt"]
        let config = try parse((validLines + tls).joined(separator: "\n") + "\n")
        XCTAssertEqual(config.security.linkTLS, ClusterConfig.LinkTLSFiles(
            certFile: "/base/tls/node.crt", keyFile: "/etc/kv/node.key", caFile: "/base/tls/ca.crt",
            mark: YAMLMark(line: 17, column: 5)))
        var withoutKey = tls
        withoutKey.remove(at: 1)
        assertConfigError((validLines + withoutKey).joined(separator: "\n") + "\n", line: 16, column: 5,
                          "security.tls needs security.cluster_key_file")
        var withoutCA = tls
        withoutCA.removeLast()
        assertConfigError((validLines + withoutCA).joined(separator: "\n") + "\n", line: 17, column: 5, "ca_file")
        assertConfigError((validLines + tls + ["    verify: none"]).joined(separator: "\n") + "\n", line: 20,
                          column: 5, "verify")
    }

    func testBadIdentifier() {
        assertConfigError(text(replacing: 6, with: "  - id: r 1"), line: 6, column: 9,
                          "replicas[0].id must be 1-64 letters, digits")
        assertConfigError(text(replacing: 2, with: "  id: " + String(repeating: "m", count: 65)), line: 2,
                          column: 7, "master.id must be 1-64")
    }

    func testOutOfRangeTimeoutAndLimit() {
        assertConfigError(text(replacing: 13, with: "    data_dir: data/r2", "timeouts:", "  prepare_timeout_ms: 0"),
                          line: 15, column: 23, "timeouts.prepare_timeout_ms must be 1-600000")
        assertConfigError(text(replacing: 13, with: "    data_dir: data/r2", "limits:", "  key_bytes_max: 100000"),
                          line: 15, column: 18, "limits.key_bytes_max must be 1-65536")
        assertConfigError(text(replacing: 13, with: "    data_dir: data/r2", "timeouts:", "  retries: 3"),
                          line: 15, column: 3, "timeouts: unknown field 'retries'")
    }

    func testErrorDescriptionShowsPosition() {
        let error = KVError.config(file: "cluster.yaml", line: 12, column: 11,
                                   message: "replicas[1].port must be 1-65535")
        XCTAssertEqual(error.description, "config: cluster.yaml:12:11: replicas[1].port must be 1-65535")
    }

    // MARK: - Where a replica binds

    func testAvailabilityIsStrictByDefaultAndItsFloorIsBounded() throws {
        let strict = try parse(text(replacing: 13, with: "    data_dir: ./data/r2"))
        XCTAssertEqual(strict.availability.ejectAfterMs, 0, "strict unless cluster.yaml turns ejection on")
        XCTAssertEqual(strict.availability.minInSync(of: 2), 2)
        let on = try parse(text(replacing: 13, with: "    data_dir: ./data/r2", "availability:", "  eject_after_ms: 3000",
                                "  min_in_sync_replicas: 1"))
        XCTAssertEqual(on.availability, ClusterConfig.Availability(ejectAfterMs: 3000, minInSyncReplicas: 1))
        assertConfigError(text(replacing: 13, with: "    data_dir: ./data/r2", "availability:", "  min_in_sync_replicas: 3"),
                          line: 15, column: 25, "availability.min_in_sync_replicas must be 1-2")
        assertConfigError(text(replacing: 13, with: "    data_dir: ./data/r2", "availability:", "  eject_after_ms: -1"),
                          line: 15, column: 19, "availability.eject_after_ms must be 0-3600000")
        assertConfigError(text(replacing: 13, with: "    data_dir: ./data/r2", "availability:", "  eject: 1"),
                          line: 15, column: 3, "unknown field 'eject'", "eject_after_ms")
    }

    func testAReplicaBindsLoopbackUnlessToldOtherwise() throws {
        let config = try parse(text(replacing: 11, with: "    host: 127.0.0.1"))
        XCTAssertEqual(config.listenAddress(of: config.replicas[0]), ClusterConfig.Endpoint(host: "127.0.0.1", port: 7001))
        let exposed = try parse(text(replacing: 11, with: "    host: 10.0.0.2", "    listen: 0.0.0.0:7102"))
        XCTAssertEqual(exposed.listenAddress(of: exposed.replicas[1]), ClusterConfig.Endpoint(host: "0.0.0.0", port: 7102))
        XCTAssertEqual(exposed.replicas[1].address, "10.0.0.2:7002", "others still dial host:port")
        let v6 = try parse(text(replacing: 11, with: "    host: ::1", "    listen: '[::1]:7002'"))
        XCTAssertEqual(v6.listenAddress(of: v6.replicas[1]).host, "::1")
    }

    func testAReplicaOnAnotherHostMustSayWhereItBinds() {
        assertConfigError(text(replacing: 11, with: "    host: 10.0.0.2"), line: 10, column: 5, "replicas[1].host 10.0.0.2 is not loopback",
                          "replicas[1].listen")
        assertConfigError(text(replacing: 11, with: "    host: 10.0.0.2", "    listen: 10.0.0.2"), line: 12, column: 13,
                          "replicas[1].listen must be host:port")
    }
}
