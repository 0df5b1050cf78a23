@testable import KVCommon
@testable import KVMaster
import XCTest

/// A write's answer: HTTP status, a message that names the failing replica and says whether a retry is safe,
/// the index header of a commit, and each replica's vote as JSON.
final class WriteReportTests: XCTestCase {
    private func outcome(committed: Bool, failure: Coordinator.Failure? = nil, replicas: [Coordinator.ReplicaReport],
                         pending: [String] = []) -> Coordinator.Outcome {
        var outcome = Coordinator.Outcome(seq: 42, committed: committed, txn: nil, failure: failure, replicas: replicas,
                                          pendingCommit: pending)
        outcome.index = committed ? 7 : 0
        return outcome
    }

    private let yes = Coordinator.ReplicaReport(server: "r1", status: true, message: "prepared", code: .ok)

    private func json(_ response: HTTPResponse) throws -> JSONValue {
        try JSONValue.parse(response.body).get()
    }

    func testACommitAnswers200WithItsIndex() throws {
        let report = WriteReport(outcome: outcome(committed: true, replicas: [yes]), op: .put(key: [1], value: [2]))
        let response = report.response(serverID: "m1")
        XCTAssertEqual(response.status, 200)
        XCTAssertTrue(response.headers.contains { $0 == ("X-Kv-Index", "7") })
        let body = try json(response)
        XCTAssertEqual(body["status"]?.boolValue, true)
        XCTAssertEqual(body["index"]?.uint64Value, 7)
        XCTAssertEqual(body["seq"]?.uint64Value, 42)
        XCTAssertEqual(body["server"]?.stringValue, "m1")
        XCTAssertTrue(report.message.contains("all 1 replicas voted yes"), report.message)
    }

    func testEachFailureHasItsStatusAndNamesTheReplica() {
        let cases: [(Coordinator.Failure, ReplyCode, Int, String)] = [
            (.unavailable, .timeout, 503, "replica r2 unavailable"),
            (.conflict, .conflict, 409, "a concurrent transaction holds the key"),
            (.conflict, .superseded, 409, "a later write to the key committed first"),
            (.notFound, .notFound, 404, "key not found"),
            (.aborted, .aborted, 409, "aborted"),
        ]
        for (failure, code, status, phrase) in cases {
            let no = Coordinator.ReplicaReport(server: "r2", status: false, message: "why not", code: code)
            let report = WriteReport(outcome: outcome(committed: false, failure: failure, replicas: [yes, no]),
                                     op: .delete(key: [1]))
            XCTAssertEqual(report.httpStatus, status, "\(failure) \(code)")
            XCTAssertTrue(report.message.contains(phrase), "\(code): \(report.message)")
            XCTAssertTrue(report.message.contains("r2: why not"), report.message)
            XCTAssertFalse(report.response(serverID: "m1").headers.contains { $0.0 == "X-Kv-Index" },
                           "a failure has no index")
        }
    }

    func testACommitStillOwedToAReplicaSaysNotToRetry() {
        let report = WriteReport(outcome: outcome(committed: true, replicas: [yes], pending: ["r3"]), op: nil)
        XCTAssertEqual(report.httpStatus, 200)
        XCTAssertTrue(report.message.contains("r3 not acknowledged yet") && report.message.contains("do not retry"),
                      report.message)
    }
}
