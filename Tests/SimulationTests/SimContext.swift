import KVCommon

/// Counters that end up in the CI log.
struct SimStats {
    var seeds = 0
    var steps = 0
    var quiescenceSteps = 0
    var transactions = 0
    var commits = 0
    var aborts = 0
    /// Aborts by cause: a conflict vote, unavailable (unreachable or timed out), delete of a missing key, other.
    var abortCauses = [0, 0, 0, 0]
    var pendingCommits = 0
    var masterCrashes = 0
    var compactions = 0
    var replicaCrashes = 0
    var resets = 0
    var drops = 0
    var duplicates = 0
    var reads = 0
    var masterResolutions = 0
    var peerResolutions = 0
    var vetoes = 0

    mutating func add(_ other: SimStats) {
        seeds += other.seeds
        steps += other.steps
        quiescenceSteps += other.quiescenceSteps
        transactions += other.transactions
        commits += other.commits
        aborts += other.aborts
        for index in abortCauses.indices { abortCauses[index] += other.abortCauses[index] }
        pendingCommits += other.pendingCommits
        masterCrashes += other.masterCrashes
        compactions += other.compactions
        replicaCrashes += other.replicaCrashes
        resets += other.resets
        drops += other.drops
        duplicates += other.duplicates
        reads += other.reads
        masterResolutions += other.masterResolutions
        peerResolutions += other.peerResolutions
        vetoes += other.vetoes
    }

    var summary: String {
        "seeds=\(seeds) steps=\(steps) (+\(quiescenceSteps) healing) transactions=\(transactions) commits=\(commits) "
            + "aborts=\(aborts) (conflict \(abortCauses[0]), unavailable \(abortCauses[1]), not-found \(abortCauses[2]), "
            + "other \(abortCauses[3])) commits-with-pending-acks=\(pendingCommits) vetoes=\(vetoes) "
            + "master-crashes=\(masterCrashes) decision-log-compactions=\(compactions) replica-crashes=\(replicaCrashes) resets=\(resets) drops=\(drops) "
            + "duplicates=\(duplicates) reads=\(reads) in-doubt-resolved-by-master=\(masterResolutions) "
            + "in-doubt-resolved-by-peers=\(peerResolutions)"
    }
}

/// State shared by every part of one run: the seeded random source, the logical clock, call ids, counters
/// and the event trace.
final class SimContext {
    enum TraceMode {
        case off
        /// Print every event as it happens (a replayed seed).
        case print
        /// Keep the last `n` events, to show after a failure.
        case tail(Int)
    }

    let config: SimConfig
    var random: SimRandom
    var step = 0
    var stats = SimStats()
    /// Crashes, resets, drops and duplicates happen only while this is true.
    var faultsEnabled = true
    private var nextCall: UInt64 = 1
    private let traceMode: TraceMode
    private(set) var tail: [String] = []

    init(config: SimConfig, trace: TraceMode) {
        self.config = config
        random = SimRandom(seed: config.seed)
        traceMode = trace
    }

    /// The participants' clock; only used to age in-doubt transactions.
    var nowMs: UInt64 { UInt64(step) * 10 }

    var mutation: SimConfig.Mutation { config.mutation }

    func newCallID() -> UInt64 {
        defer { nextCall += 1 }
        return nextCall
    }

    func trace(_ line: @autoclosure () -> String) {
        switch traceMode {
        case .off:
            return
        case .print:
            print("[\(config.seed):\(step)] \(line())")
        case .tail(let count):
            tail.append("[\(config.seed):\(step)] \(line())")
            if tail.count > count { tail.removeFirst(tail.count - count) }
        }
    }
}

extension WireRequest {
    /// The request line without its newline, for traces.
    var brief: String { String(decoding: encoded().dropLast(), as: UTF8.self) }
}

extension WireReply {
    var brief: String {
        var text = "\(server) \(status ? "ok" : "no") \(code.rawValue) seq=\(seq.map(String.init) ?? "-")"
        if let stat { text += " in_doubt=\(stat.inDoubt.map(\.seq))" }
        return text
    }
}

extension WriteOp {
    var brief: String {
        switch self {
        case .put(let key, let value):
            return "put \(String(decoding: key, as: UTF8.self))=\(String(decoding: value, as: UTF8.self))"
        case .delete(let key): return "del \(String(decoding: key, as: UTF8.self))"
        }
    }
}
