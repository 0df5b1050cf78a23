import Foundation
import KVCommon
import Logging

/// `POST /admin/repair` and the periodic verify of `availability.auto_repair`: with writes paused, every in-sync
/// replica's `stat`; the `RepairPlan` from their digests; and, while writes are still paused, the plan handed to
/// the manager, which resyncs the replicas that differ from the majority's copy (only from it).
struct ReplicaRepair {
    let node: MasterNode

    enum Outcome {
        case planned(RepairPlan)
        /// Running writes did not pause in time.
        case notPaused
    }

    /// Compares and, when `apply` and a majority exists, resyncs the others.
    func run(apply: Bool) -> Outcome {
        let timeouts = node.view.config.timeouts
        let plan: RepairPlan? = node.whilePaused(timeoutMs: timeouts.prepareTimeoutMs + timeouts.commitTimeoutMs) {
            let view = node.view
            var digests: [String: String] = [:]
            for (link, result) in ReplicaReads.callAll(view.readable, .stat, timeoutMs: timeouts.readTimeoutMs) {
                if case .success(let reply) = result, let stat = reply.stat {
                    digests[link.replica.id] = "\(stat.keys):\(stat.digestHex)"
                }
            }
            let plan = RepairPlan(inSync: view.membership.participants.map(\.id), digests: digests)
            // Fed now, ahead of the pause's release: the digests still describe the replicas.
            if apply && !plan.targets.isEmpty { node.submit(.repair(plan)) }
            return plan
        }
        return plan.map(Outcome.planned) ?? .notPaused
    }

    /// The answer to `POST /admin/repair`: 200 identical or resyncing, 409 without a majority (nothing changed),
    /// 503 when writes did not pause.
    func response(serverID: String) -> HTTPResponse {
        var writer = JSONWriter(capacity: 512)
        switch run(apply: true) {
        case .notPaused:
            writer.field("status", false)
            writer.field("message", "repair: running writes did not pause in time; nothing changed, retry")
            writer.field("seq", nil)
            writer.field("server", serverID)
            return HTTPResponse(status: 503, body: writer.finish())
        case .planned(let plan):
            let ok = plan.majority != nil
            writer.field("status", ok)
            writer.field("message", "repair: " + plan.summary)
            writer.field("seq", nil)
            writer.field("server", serverID)
            var detail = JSONWriter(capacity: 256)
            detail.field("identical", plan.identical)
            if let majority = plan.majority { detail.field("majority", majority) }
            detail.field("resyncing", rawJSON: JSONWriter.array(strings: plan.targets))
            detail.field("sources", rawJSON: JSONWriter.array(strings: plan.sources))
            detail.field("unanswered", rawJSON: JSONWriter.array(strings: plan.unanswered))
            var digests = JSONWriter(capacity: 128)
            for id in plan.digests.keys.sorted() { digests.field(id, plan.digests[id]!) }
            detail.field("digests", rawJSON: digests.finish())
            writer.field("repair", rawJSON: detail.finish())
            return HTTPResponse(status: ok ? 200 : 409, body: writer.finish())
        }
    }

    /// `availability.auto_repair`: every `verify_interval_s`, compare, and repair when they differ. Runs until the
    /// process ends, on a thread of its own (at normal priority: it holds writes back while it compares).
    static func startPeriodic(node: MasterNode, logger: Logger) {
        Thread.detachNewThread {
            Thread.current.name = "kv-auto-repair"
            while true {
                let availability = node.view.config.availability
                Thread.sleep(forTimeInterval: Double(max(1, availability.verifyIntervalS)))
                guard node.view.config.availability.autoRepair else { continue }
                switch ReplicaRepair(node: node).run(apply: true) {
                case .planned(let plan) where !plan.identical:
                    logger.warning("periodic verify: \(plan.summary)")
                case .planned:
                    logger.info("periodic verify: in-sync replicas identical")
                case .notPaused:
                    logger.notice("periodic verify: running writes did not pause in time; trying again next time")
                }
            }
        }
    }
}
