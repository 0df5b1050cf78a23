import Foundation
import KVCommon

/// `GET /status`: the master's identity and configuration, and each replica's live state from `stat`.
struct StatusReport {
    let node: MasterNode
    let view: MasterView
    /// `?verify=1`: hold writes back for a moment and compare every in-sync replica's content digest.
    var verify = false

    func response() -> HTTPResponse {
        let config = view.config
        let replicaStatus = { ReplicaReads.callAll(view.links, .stat, timeoutMs: config.timeouts.readTimeoutMs) }
        var replicas: [[UInt8]] = []
        var upCount = 0
        let results: [(ReplicaLink, Result<WireReply, LinkFailure>)]
        if verify {
            let timeoutMs = config.timeouts.prepareTimeoutMs + config.timeouts.commitTimeoutMs
            guard let paused = node.whilePaused(timeoutMs: timeoutMs, replicaStatus)
            else {
                var writer = JSONWriter()
                writer.field("status", false)
                writer.field("message", "verify: running writes did not pause in time; retry")
                writer.field("seq", nil)
                writer.field("server", config.master.id)
                return HTTPResponse(status: 503, body: writer.finish())
            }
            results = paused
        } else {
            results = replicaStatus()
        }
        let counters = node.status()
        var digests: [String: String] = [:]
        for (link, result) in results {
            var writer = JSONWriter(capacity: 256)
            writer.field("id", link.replica.id)
            writer.field("address", link.replica.address)
            let syncing = view.isSyncing(link.replica.id)
            switch result {
            case .success(let reply):
                upCount += syncing ? 0 : 1
                writer.field("up", true)
                writer.field("state", !syncing ? "up" : counters.ejected.contains(link.replica.id) ? "ejected" : "syncing")
                if let stat = reply.stat {
                    if !syncing { digests[link.replica.id] = "\(stat.keys):\(stat.digestHex)" }
                    writer.field("joined", stat.joined)
                    writer.field("joined_since", stat.joinedSince)
                    writer.field("keys", stat.keys)
                    writer.field("digest", stat.digestHex)
                    writer.field("last_committed_seq", stat.lastCommittedSeq)
                    writer.field("log_syncs", stat.logSyncs)
                    writer.field("in_doubt", rawJSON: stat.inDoubtJSON())
                }
            case .failure(let failure):
                writer.field("up", false)
                writer.field("state", counters.ejected.contains(link.replica.id) ? "ejected" : "down")
                writer.field("error", failure.reason)
            }
            if let progress = counters.transfers[link.replica.id], syncing || progress.phase != "joined" {
                var sync = JSONWriter(capacity: 160)
                sync.field("phase", progress.phase)
                sync.field("loaded", progress.loaded)
                sync.field("total", progress.total)
                sync.field("attempt", progress.attempt)
                if let error = progress.error { sync.field("error", error) }
                writer.field("sync", rawJSON: sync.finish())
            }
            replicas.append(writer.finish())
        }
        for replica in view.membership.removed {
            var writer = JSONWriter(capacity: 128)
            writer.field("id", replica.id)
            writer.field("address", replica.address)
            writer.field("up", false)
            writer.field("state", "removed")
            replicas.append(writer.finish())
        }
        let total = view.membership.participants.count
        let syncingIDs = view.membership.syncing.sorted()
        let ejectAfterMs = config.availability.ejectAfterMs
        var message = upCount == total ? "all \(total) replicas up"
            : "\(upCount) of \(total) replicas up; " + (ejectAfterMs == 0 ? "writes fail until every replica answers"
                : "writes fail until every replica answers or a failed one is ejected (after \(ejectAfterMs) ms)")
        if !counters.ejected.isEmpty { message += "; ejected: \(counters.ejected.joined(separator: ", "))" }
        let syncingOnly = syncingIDs.filter { !counters.ejected.contains($0) }
        if !syncingOnly.isEmpty { message += "; syncing: \(syncingOnly.joined(separator: ", "))" }
        let identical = Set(digests.values).count <= 1 && digests.count == total
        if verify { message += identical ? "; verify: all in-sync replicas identical" : "; verify: REPLICAS DIFFER" }
        var writer = JSONWriter(capacity: 1024)
        if let fenced = counters.fenced { message = fenced + "; " + message }
        writer.field("status", upCount == total && (!verify || identical) && counters.fenced == nil)
        writer.field("message", message)
        writer.field("seq", nil)
        writer.field("server", config.master.id)
        writer.field("config", config.path)
        writer.field("config_epoch", view.membership.configEpoch)
        writer.field("config_loaded_at", ISO8601DateFormatter().string(from: view.loadedAt))
        if let error = node.reloadError { writer.field("last_reload_error", error) }
        writer.field("epoch", counters.seqEpoch)
        if let fenced = counters.fenced { writer.field("fenced", fenced) }
        writer.field("uptime_s", Int(Date().timeIntervalSince(node.startedAt)))
        writer.field("in_flight", counters.inFlight)
        writer.field("pending_commits", counters.pendingCommits)
        writer.field("pending_commits_for_removed", counters.parkedCommits)
        writer.field("decision_log_syncs", counters.decisionLogSyncs)
        writer.field("index", node.watch.lastIndex)
        writer.field("watch", rawJSON: node.watch.statusJSON())
        let (loaded, leaseCount, attached) = node.leases.withTable { table in
            (table.loaded, table.leases.count, table.leases.values.reduce(0) { $0 + $1.keys.count })
        }
        var leases = JSONWriter()
        leases.field("loaded", loaded)
        leases.field("count", UInt64(leaseCount))
        leases.field("keys", UInt64(attached))
        writer.field("leases", rawJSON: leases.finish())
        writer.field("availability", rawJSON: EjectionLog.statusJSON(config.availability, replicas: config.replicas.count,
                                                                      ejected: counters.ejected,
                                                                      entries: counters.ejections))
        writer.field("replicas", rawJSON: JSONWriter.array(replicas))
        if verify {
            var check = JSONWriter(capacity: 256)
            check.field("identical", identical)
            for (id, digest) in digests.sorted(by: { $0.key < $1.key }) { check.field(id, digest) }
            writer.field("verify", rawJSON: check.finish())
        }
        return HTTPResponse(status: 200, body: writer.finish())
    }
}
