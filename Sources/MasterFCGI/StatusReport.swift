import Foundation
import KVCommon

/// `GET /status`: the master's identity and configuration, and each replica's live state from `stat`.
struct StatusReport {
    let service: KVService

    func response() -> HTTPResponse {
        let view = service.views.current
        let config = view.config
        var replicas: [[UInt8]] = []
        var upCount = 0
        for (link, result) in service.replicaStatus(in: view) {
            var writer = JSONWriter(capacity: 256)
            writer.field("id", link.replica.id)
            writer.field("address", link.replica.address)
            switch result {
            case .success(let reply):
                upCount += 1
                writer.field("up", true)
                writer.field("state", "up")
                if let stat = reply.stat {
                    writer.field("keys", stat.keys)
                    writer.field("digest", stat.digestHex)
                    writer.field("last_committed_seq", stat.lastCommittedSeq)
                    writer.field("log_syncs", stat.logSyncs)
                    writer.field("in_doubt", rawJSON: stat.inDoubtJSON())
                }
            case .failure(let failure):
                writer.field("up", false)
                writer.field("state", "down")
                writer.field("error", failure.reason)
            }
            replicas.append(writer.finish())
        }
        let total = view.pool.links.count
        var writer = JSONWriter(capacity: 1024)
        writer.field("status", upCount == total)
        writer.field("message", upCount == total ? "all \(total) replicas up"
            : "\(upCount) of \(total) replicas up; writes fail until every replica answers")
        writer.field("seq", nil)
        writer.field("server", config.master.id)
        writer.field("config", config.path)
        writer.field("config_generation", view.generation)
        writer.field("config_loaded_at", ISO8601DateFormatter().string(from: view.loadedAt))
        if let error = service.views.reloadError { writer.field("last_reload_error", error) }
        writer.field("epoch", service.seqs.epoch)
        writer.field("uptime_s", Int(Date().timeIntervalSince(service.startedAt)))
        writer.field("in_flight", service.registry.count)
        writer.field("pending_commits", service.delivery.pendingCount)
        writer.field("decision_log_syncs", service.runner.decisions.syncCount)
        writer.field("replicas", rawJSON: JSONWriter.array(replicas))
        return HTTPResponse(status: 200, body: writer.finish())
    }
}
