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
    private let lockWaitMs: Int
    private let logger: Logger
    private let timers = DispatchQueue(label: "kv.replica.timers")
    let server: String

    /// Opens the log in `dataDir`, replays it, and returns a node ready to serve.
    init(server: String, dataDir: String, lockWaitMs: Int, logger: Logger) throws {
        self.server = server
        self.lockWaitMs = lockWaitMs
        self.logger = logger
        try FileIO.makeDirectory(dataDir)
        var participant = Participant(server: server)
        let started = Self.nowMs()
        var records = 0
        let file = try LogFile(path: dataDir + "/replica.log") { payload, _ in
            participant.replay(try ReplicaRecord.decode(payload), nowMs: started)
            records += 1
        }
        if file.discardedTailBytes > 0 {
            logger.warning("discarded a torn record at the end of \(file.path) (\(file.discardedTailBytes) bytes): a crash interrupted an append that was never acknowledged")
        }
        let stat = participant.stat(nowMs: started)
        logger.info("replayed \(records) log records in \(Self.nowMs() - started) ms: \(stat.keys) keys, last committed seq \(stat.lastCommittedSeq), \(stat.inDoubt.count) in doubt")
        for item in stat.inDoubt {
            logger.warning("transaction \(item.seq) is in doubt (prepared, no decision in the log); its key stays locked until the master resolves it")
        }
        self.participant = participant
        log = GroupCommitLog(file: file, logger: logger)
    }

    /// Handles one request; `respond` is called exactly once with the reply line.
    func submit(_ request: WireRequest, respond: @escaping Responder) {
        lock.lock()
        let id = nextRequestID
        nextRequestID += 1
        responders[id] = respond
        let actions = participant.handle(.request(request, id, nowMs: Self.nowMs()))
        execute(actions)
        lock.unlock()
    }

    /// A reply for a request that never reached the state machine (it did not parse).
    func errorReply(_ error: KVError) -> [UInt8] {
        WireReply(status: false, code: .badRequest, message: error.description, seq: nil, server: server).encoded()
    }

    func close() { log.close() }

    private func readTimedOut(_ id: Participant.RequestID) {
        lock.lock()
        execute(participant.handle(.readTimedOut(id)))
        lock.unlock()
    }

    /// Must be called with `lock` held.
    private func execute(_ actions: [Participant.Action]) {
        var payloads: [[UInt8]] = []
        var afterDurable: [() -> Void] = []
        for action in actions {
            switch action {
            case .persist(let record):
                payloads.append(record.encoded())
            case .reply(let id, let reply):
                guard let responder = responders.removeValue(forKey: id) else { continue }
                let bytes = reply.encoded()
                if payloads.isEmpty {
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
        if !payloads.isEmpty {
            Failpoints.hit("replica-before-log-append")
            log.append(payloads) {
                Failpoints.hit("replica-after-log-fsync")
                for send in afterDurable { send() }
            }
        }
    }

    static func nowMs() -> UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000 }
}
