import Foundation
import KVCommon

/// `POST /txn`: an etcd-style transaction. Body:
/// `{"compare":[{"key":"a","target":"version|created|value|exists","op":"=","value":...}],
///   "success":[{"op":"put","key":"a","value":"1"},{"op":"del","key":"b"},{"op":"get","key":"c"}],
///   "failure":[...]}` — keys and values as UTF-8 strings, or `key_base64`/`value_base64`.
/// Every key involved is locked at every replica in byte order; the chosen branch's writes commit atomically
/// under one seq, or nothing does. Answer: `succeeded` (which branch ran) and `responses` (the `get`s).
extension KVRouter {
    func transaction(_ request: HTTPRequest) -> HTTPResponse {
        if request.bodyTooLarge { return json(413, false, "transaction body too large", seq: nil) }
        let spec: TxnSpec
        do {
            spec = try TxnSpec.parse(try JSONValue.parse(request.body).get(), base64: false)
        } catch {
            return json(400, false, "malformed transaction: \(error)", seq: nil)
        }
        if spec.opCount > limits.txnOpsMax {
            return json(413, false, "transaction has \(spec.opCount) compares and operations; the limit is "
                + "\(limits.txnOpsMax) (limits.txn_ops_max)", seq: nil)
        }
        if spec.sizeBytes > limits.txnBytesMax {
            return json(413, false, "transaction holds \(spec.sizeBytes) bytes of keys and values; the limit is "
                + "\(limits.txnBytesMax) (limits.txn_bytes_max)", seq: nil)
        }
        for key in spec.keys {
            if let problem = checkKey(key) { return problem }
        }
        if let denied = permit(spec) { return denied }
        let result = node.write(WriteRequest.txn(spec).intent)
        guard case .outcome(let outcome) = result else { return answer(result, op: nil) }
        var report = WriteReport(outcome: outcome, op: nil)
        if outcome.committed, let txn = outcome.txn {
            report.summary = txn.succeeded ? "transaction committed: compares held, success branch applied (seq \(outcome.seq))"
                : "transaction committed: compares failed, failure branch applied (seq \(outcome.seq))"
        }
        return report.response(serverID: serverID) { writer in
            guard let txn = outcome.txn, outcome.committed else { return }
            writer.field("succeeded", txn.succeeded)
            writer.field("responses", rawJSON: JSONWriter.array(txn.reads.map { read in
                var inner = JSONWriter()
                KVRouter.field("key", read.key, to: &inner)
                inner.field("found", read.entry != nil)
                if let entry = read.entry {
                    KVRouter.field("value", entry.value, to: &inner)
                    inner.field("version", entry.version)
                    inner.field("created", entry.created)
                }
                return inner.finish()
            }))
        }
    }
}
