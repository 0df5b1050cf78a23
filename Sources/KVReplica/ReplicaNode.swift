import Foundation
import KVCommon
import KVRuntime
import Logging

/// Runs the `Participant` state machine for one replica: feeds it requests, executes its actions.
///
/// All events go through one lock, and persist actions are queued to the group-commit log while that lock is
/// held, so the log's record order is exactly the state machine's order. Replies listed after a persist are
/// sent from the log's completion, i.e. only once the record is durable.
final class ReplicaNode: @unchecked Sendable {
    typealias Responder = ([UInt8]) -> Void

    private let lock = NSLock()
    private var participant: Participant
    private var responders: [Participant.RequestID: Responder] = [:]
    private var nextRequestID: Participant.RequestID = 1
    private let log: GroupCommitLog
    private var lockWaitMs: Int
    let logger: Logger
    private let timers = DispatchQueue(label: "kv.replica.timers")
    /// In-doubt seqs that neither the master nor any peer could resolve at the last attempt.
    private var blocked: Set<UInt64> = []
    let server: String

    private let dataDir: String
    private let directoryLock: DirectoryLock
    private var snapshotLogBytesMax: Int
    /// The request line limit the server holds to (`limits.wireRequestBytesMax`), reported in `stat`.
    private var requestBytesMax: Int
    private var generation: UInt64
    private var snapshotting = false

    /// Loads the snapshot and log segments in `dataDir` and returns a node ready to serve.
    init(server: String, dataDir: String, lockWaitMs: Int, snapshotLogBytesMax: Int, limits: ClusterConfig.Limits,
         logger: Logger) throws {
        self.server = server
        self.lockWaitMs = lockWaitMs
        self.logger = logger
        self.dataDir = dataDir
        self.snapshotLogBytesMax = snapshotLogBytesMax
        requestBytesMax = limits.wireRequestBytesMax
        // Before anything in the directory is read: a second replica on it would append to the same log.
        directoryLock = try DirectoryLock(directory: dataDir, process: "kv-replicad")
        var participant = Participant(server: server, pageBytesMax: limits.pageBytesMax, txnLimits: limits)
        let opened = try ReplicaStorage.open(directory: dataDir, into: &participant, logger: logger)
        let stat = participant.stat(nowMs: Self.nowMs())
        logger.info("\(opened.report): \(stat.keys) keys, last committed seq \(stat.lastCommittedSeq), \(stat.inDoubt.count) in doubt")
        for item in stat.inDoubt {
            logger.warning("transaction \(item.seq) is in doubt (prepared, no decision in the log); its key stays locked until it is resolved")
        }
        self.participant = participant
        generation = opened.generation
        log = GroupCommitLog(file: opened.file, logger: logger)
    }

    /// Handles one request; `respond` is called exactly once with the reply line. With `callerFlushes` a record
    /// the request writes is only queued: the caller must call `flushLog()` soon (its event loop does at the
    /// end of each read batch), and the reply goes out once that flush made it durable.
    /// `link`: the master and epoch the connection's handshake proved, which the participant's fence judges.
    func submit(_ request: WireRequest, link: MasterLink? = nil, callerFlushes: Bool = false,
                respond: @escaping Responder) {
        lock.lock()
        let id = nextRequestID
        nextRequestID += 1
        responders[id] = respond
        var actions = participant.handle(.request(request, id, nowMs: Self.nowMs(), link: link))
        if request.command == .stat { actions = actions.map(markBlocked) }
        execute(actions, sync: callerFlushes ? .caller : .writer)
        lock.unlock()
    }

    /// Makes the records of this thread's requests durable, with everything queued before them, and sends the
    /// replies waiting for it. When only unforced COMMIT records are queued (see `execute`) it does nothing,
    /// unless `force` says a reply is held behind theirs.
    func flushLog(force: Bool = false) { log.flush(onlyForCallerRecords: !force) }

    /// Takes a reload's time-out, limits and snapshot threshold for every request from now on.
    func apply(lockWaitMs: Int, snapshotLogBytesMax: Int, limits: ClusterConfig.Limits) {
        lock.lock()
        self.lockWaitMs = lockWaitMs
        self.snapshotLogBytesMax = snapshotLogBytesMax
        requestBytesMax = limits.wireRequestBytesMax
        participant.apply(limits: limits)
        lock.unlock()
    }

    /// Transactions prepared here and not yet decided.
    func inDoubt() -> [ReplicaStat.InDoubt] {
        lock.lock()
        defer { lock.unlock() }
        return participant.stat(nowMs: Self.nowMs()).inDoubt
    }

    /// Records which in-doubt seqs the resolver could not decide (shown as `blocked` in `stat`).
    func setBlocked(_ seqs: Set<UInt64>) {
        lock.lock()
        blocked = seqs
        lock.unlock()
    }

    private func markBlocked(_ action: Participant.Action) -> Participant.Action {
        guard case .reply(let id, var reply) = action, var stat = reply.stat else { return action }
        for index in stat.inDoubt.indices { stat.inDoubt[index].blocked = blocked.contains(stat.inDoubt[index].seq) }
        stat.logSyncs = log.counters.syncs
        stat.dataDir = dataDir
        stat.requestBytesMax = requestBytesMax
        reply.stat = stat
        return .reply(id, reply)
    }

    /// A reply for a request that never reached the state machine (it did not parse).
    func errorReply(_ error: KVError) -> [UInt8] {
        WireReply(status: false, code: .badRequest, message: error.description, seq: nil, server: server).encoded()
    }

    /// The reply to a command the peer's role may not send (nothing was executed).
    func refusal(_ request: WireRequest, _ reason: String) -> [UInt8] {
        WireReply(status: false, code: .unauthorized, message: reason, seq: request.seq, server: server).encoded()
    }

    func close() { log.close() }

    private func readTimedOut(_ id: Participant.RequestID) {
        lock.lock()
        execute(participant.handle(.readTimedOut(id)))
        lock.unlock()
    }

    /// Must be called with `lock` held.
    private func execute(_ actions: [Participant.Action], sync: GroupCommitLog.Sync = .writer) {
        var payloads: [[UInt8]] = []
        var afterDurable: [() -> Void] = []
        var prepares = false
        var commits = false
        var otherRecords = false
        var barrier = false
        for action in actions {
            switch action {
            case .awaitDurable:
                barrier = true
                otherRecords = true
            case .persist(let record):
                payloads.append(record.encoded())
                if case .prepare = record { prepares = true }
                if case .commit = record { commits = true } else { otherRecords = true }
            case .reply(let id, let reply):
                guard let responder = responders.removeValue(forKey: id) else { continue }
                let bytes = reply.encoded()
                if payloads.isEmpty && !barrier {
                    responder(bytes)
                } else {
                    afterDurable.append { responder(bytes) }
                }
            case .awaitDecision(let id):
                timers.asyncAfter(deadline: .now() + .milliseconds(lockWaitMs)) { [weak self] in
                    self?.readTimedOut(id)
                }
            }
        }
        if !payloads.isEmpty || barrier {
            if prepares { Failpoints.hit("replica-before-prepare-fsync") }
            if !snapshotting && log.sizeBytes >= snapshotLogBytesMax { beginSnapshot() }
            // A `com` is acknowledged only once its COMMIT record is durable, but nobody waits for that ack (the
            // client was answered when the master's decision became durable), so it is not forced: it rides
            // with the next flush (the next prepare's, typically) or the writer's within about 100 ms. That
            // spares an fsync per write, one that a following prepare would otherwise have queued behind.
            let sync = commits && !otherRecords && sync == .caller ? .lazy : sync
            log.append(payloads, sync: sync) {
                if prepares { Failpoints.hit("replica-after-prepare-fsync") }
                if commits { Failpoints.hit("replica-after-commit") }
                for send in afterDurable { send() }
            }
        }
    }

    /// Must be called with `lock` held: seals the current segment at this exact point of the record order
    /// and writes a snapshot of the state at that point in the background.
    private func beginSnapshot() {
        snapshotting = true
        let next = generation + 1
        let state = participant
        let directory = dataDir
        log.rotate(to: ReplicaStorage.segmentPath(directory, next)) { [self] in
            BackgroundThread.start(name: "kv-snapshot") { [self] in
                let started = Self.nowMs()
                do {
                    let records = try ReplicaStorage.writeSnapshot(state, generation: next, directory: directory)
                    logger.info("snapshot \(next): \(state.store.count) keys, \(records) records in \(Self.nowMs() - started) ms; older segments removed")
                } catch {
                    logger.error("snapshot \(next) failed (the log segments stay, nothing is lost): \(error)")
                }
                lock.lock()
                generation = next
                snapshotting = false
                lock.unlock()
            }
        }
    }

    static func nowMs() -> UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000 }
}
