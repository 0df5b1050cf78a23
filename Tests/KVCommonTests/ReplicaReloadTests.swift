@testable import KVCommon
import XCTest

/// What a replica takes from an edited cluster.yaml, what waits for its restart, and what it refuses.
final class ReplicaReloadTests: XCTestCase {
    private func config(replicas: [(id: String, port: Int, dataDir: String)] = [("r1", 7001, "data/r1"), ("r2", 7002, "data/r2")],
                        query: String? = "127.0.0.1:7100", extra: [String] = []) throws -> ClusterConfig {
        var lines = ["master:", "  id: m1", "  listen: 127.0.0.1:9000", "  decision_log_dir: data/master"]
        if let query { lines.append("  query_listen: \(query)") }
        lines.append("replicas:")
        for replica in replicas {
            lines += ["  - id: \(replica.id)", "    host: 127.0.0.1", "    port: \(replica.port)",
                      "    data_dir: \(replica.dataDir)"]
        }
        return try ClusterConfig.parse((lines + extra).joined(separator: "\n"), fileName: "cluster.yaml",
                                       baseDirectory: "/base")
    }

    func testPeersQueryAddressTimeoutsAndLimitsApplyLive() throws {
        let running = try config()
        let loaded = try config(replicas: [("r1", 7001, "data/r1"), ("r2", 7012, "data/r2"), ("r4", 7004, "data/r4")],
                                query: "127.0.0.1:7200",
                                extra: ["timeouts:", "  lock_wait_timeout_ms: 250", "limits:", "  value_bytes_max: 2097152",
                                        "storage:", "  snapshot_log_bytes_max: 8192"])
        let plan = try ReplicaReload.plan(running: running, loaded: loaded, id: "r1")
        XCTAssertEqual(plan.needsRestart, [])
        XCTAssertEqual(plan.config, loaded, "nothing start-only changed: the file is taken as it is")
        XCTAssertEqual(plan.applied, [
            "in-doubt transactions are asked at 127.0.0.1:7200 (was 127.0.0.1:7100)",
            "peer r2 moved to 127.0.0.1:7012 (was 127.0.0.1:7002)",
            "peer r4 added at 127.0.0.1:7004",
            "timeouts.lock_wait_timeout_ms 1000 → 250",
            "limits.value_bytes_max 1048576 → 2097152",
            "storage.snapshot_log_bytes_max 67108864 → 8192",
        ])
    }

    func testARemovedPeerIsNamedAndAnUnchangedFileChangesNothing() throws {
        let running = try config(replicas: [("r1", 7001, "data/r1"), ("r2", 7002, "data/r2"), ("r3", 7003, "data/r3")])
        let plan = try ReplicaReload.plan(running: running, loaded: try config(), id: "r1")
        XCTAssertEqual(plan.applied, ["peer r3 removed (still asked, at 127.0.0.1:7003, about transactions it took part in)"])
        let same = try ReplicaReload.plan(running: running, loaded: running, id: "r2")
        XCTAssertEqual(same.applied, [])
        XCTAssertEqual(same.summary, "nothing this replica uses changed")
    }

    /// Its own port and data directory are where the running process already is: the reload says they need a
    /// restart and keeps the old values in the configuration it runs with.
    func testItsOwnAddressAndDataDirectoryWaitForARestart() throws {
        let running = try config()
        let loaded = try config(replicas: [("r1", 7011, "data/r1-new"), ("r2", 7002, "data/r2")])
        let plan = try ReplicaReload.plan(running: running, loaded: loaded, id: "r1")
        XCTAssertEqual(plan.needsRestart.count, 2, "\(plan.needsRestart)")
        XCTAssertTrue(plan.needsRestart[0].hasPrefix("replicas[r1].data_dir /base/data/r1 → /base/data/r1-new"))
        XCTAssertEqual(plan.needsRestart[1], "the address replica r1 binds, 127.0.0.1:7001 → 127.0.0.1:7011")
        XCTAssertEqual(plan.config.replica(id: "r1")?.dataDir, "/base/data/r1")
        XCTAssertTrue(plan.summary.contains("needs a restart: replicas[r1].data_dir"), plan.summary)
    }

    func testAFileWithoutThisReplicaIsRefusedSayingWhatToDo() throws {
        let running = try config()
        let loaded = try config(replicas: [("r1", 7001, "data/r1")])
        XCTAssertThrowsError(try ReplicaReload.plan(running: running, loaded: loaded, id: "r2")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("no replica with id 'r2' (known: r1)"), text)
            XCTAssertTrue(text.contains("keeps its old configuration"), text)
            XCTAssertTrue(text.contains("systemctl disable --now kv-replica@r2"), text)
        }
    }

    func testChangedSecurityFilesWaitForARestartOfEveryProcess() throws {
        let running = try config()
        let loaded = try config(extra: ["security:", "  cluster_key_file: cluster.key"])
        let plan = try ReplicaReload.plan(running: running, loaded: loaded, id: "r1")
        XCTAssertEqual(plan.needsRestart, ["security.cluster_key_file and security.tls (read at start by every process)"])
        XCTAssertNil(plan.config.security.clusterKeyFile, "the running replica keeps the links it started with")
    }
}
