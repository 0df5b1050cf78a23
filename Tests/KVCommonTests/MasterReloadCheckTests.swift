@testable import KVCommon
import XCTest

/// The master's check of an edited cluster.yaml against what the running replicas report.
final class MasterReloadCheckTests: XCTestCase {
    private func config(_ ids: [String], valueBytesMax: Int? = nil, dataDir: (String) -> String = { "data/\($0)" })
        throws -> ClusterConfig {
        var lines = ["master:", "  id: m1", "  listen: 127.0.0.1:9000", "  decision_log_dir: data/master", "replicas:"]
        for (index, id) in ids.enumerated() {
            lines += ["  - id: \(id)", "    host: 127.0.0.1", "    port: \(7001 + index)", "    data_dir: \(dataDir(id))"]
        }
        if let valueBytesMax { lines += ["limits:", "  value_bytes_max: \(valueBytesMax)"] }
        return try ClusterConfig.parse(lines.joined(separator: "\n"), fileName: "cluster.yaml", baseDirectory: "/base")
    }

    private func stat(_ config: ClusterConfig, _ id: String) -> MasterReloadCheck.Report {
        var stat = ReplicaStat(keys: 0, digest: 0, lastCommittedSeq: 0, inDoubt: [])
        stat.dataDir = config.replica(id: id)!.dataDir
        stat.requestBytesMax = config.limits.wireRequestBytesMax
        return .answered(stat)
    }

    func testAFileThatMatchesTheRunningReplicasPasses() throws {
        let running = try config(["r1", "r2"])
        let loaded = try config(["r1", "r2", "r3"])
        let reports = ["r1": stat(running, "r1"), "r2": stat(running, "r2"), "r3": stat(loaded, "r3")]
        XCTAssertNil(MasterReloadCheck.refusal(running: running, loaded: loaded, reports: reports))
    }

    func testANewReplicaThatDoesNotAnswerIsRefusedButADeadOldOneIsNot() throws {
        let running = try config(["r1", "r2"])
        let loaded = try config(["r1", "r2", "r4"])
        let reports: [String: MasterReloadCheck.Report] = [
            "r1": stat(running, "r1"), "r2": .unreachable("connection refused"), "r4": .unreachable("connection refused")]
        let refusal = try XCTUnwrap(MasterReloadCheck.refusal(running: running, loaded: loaded, reports: reports))
        XCTAssertTrue(refusal.hasPrefix("reload rejected, the old configuration stays in force: "), refusal)
        XCTAssertTrue(refusal.contains("new replica r4 at 127.0.0.1:7003 does not answer (connection refused): start it first"),
                      refusal)
        XCTAssertFalse(refusal.contains("r2"), "a configured replica that is down must not block a reload: \(refusal)")
        XCTAssertNil(MasterReloadCheck.refusal(running: running, loaded: try config(["r1"]), reports: reports),
                     "removing the dead replica r2 must pass")
    }

    func testAReplicaServingAnotherDataDirectoryIsRefused() throws {
        let running = try config(["r1", "r2"])
        let loaded = try config(["r1", "r2"]) { $0 == "r2" ? "data/r2-new" : "data/\($0)" }
        let reports = ["r1": stat(running, "r1"), "r2": stat(running, "r2")]
        let refusal = try XCTUnwrap(MasterReloadCheck.refusal(running: running, loaded: loaded, reports: reports))
        XCTAssertTrue(refusal.contains("replica r2 at 127.0.0.1:7002 serves data_dir /base/data/r2, but the file gives it "
                                       + "/base/data/r2-new: restart it"), refusal)
        // Once r2 was restarted with the new file it reports the new directory, and the same file passes.
        XCTAssertNil(MasterReloadCheck.refusal(running: running, loaded: loaded,
                                               reports: ["r1": stat(running, "r1"), "r2": stat(loaded, "r2")]))
    }

    func testRaisingTheValueLimitNeedsTheReplicasReloadedFirst() throws {
        let running = try config(["r1", "r2"])
        let loaded = try config(["r1", "r2"], valueBytesMax: 4 << 20)
        let before = ["r1": stat(running, "r1"), "r2": stat(running, "r2")]
        let refusal = try XCTUnwrap(MasterReloadCheck.refusal(running: running, loaded: loaded, reports: before))
        XCTAssertTrue(refusal.contains("replica r1 takes request lines of up to \(running.limits.wireRequestBytesMax) bytes "
                                       + "and the new limits need \(loaded.limits.wireRequestBytesMax): reload the replicas "
                                       + "first"), refusal)
        XCTAssertNil(MasterReloadCheck.refusal(running: running, loaded: loaded,
                                               reports: ["r1": stat(loaded, "r1"), "r2": stat(loaded, "r2")]))
        // Lowering a limit needs nothing of the replicas.
        XCTAssertNil(MasterReloadCheck.refusal(running: loaded, loaded: running, reports: before))
    }
}
