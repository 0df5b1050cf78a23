import Foundation
import KVCommon
import KVRuntime
import NIOCore

/// Drives one transaction's `Coordinator` on an event loop: replies, time-outs and the decision log's
/// completion are fed to the state machine there, as they arrive, and its actions executed. The FastCGI
/// worker that started the transaction sleeps until the outcome — one wake-up per write, not one per reply.
final class TransactionDriver: DeadlineTarget, @unchecked Sendable {
    struct Context {
        let decisions: DecisionLog
        let registry: InFlightRegistry
        let delivery: CommitDelivery
        let dirty: DirtyKeys
    }

    private let loop: EventLoop
    private let context: Context
    private let write: WriteRequest
    private let pool: ReplicaPool
    private let timeouts: ClusterConfig.Timeouts
    // Event-loop state.
    private var coordinator: Coordinator
    private var phase: Coordinator.Phase
    /// When the current phase times out (watched by the loop's `DeadlineSweeper`).
    private(set) var deadline = NIODeadline.distantFuture
    private var outcome: Coordinator.Outcome?
    /// The coordinator finished (every ack in, or the commit time-out passed).
    private var done = false
    private let finished = DispatchSemaphore(value: 0)

    init(seq: UInt64, write: WriteRequest, pool: ReplicaPool, participants: [String],
         timeouts: ClusterConfig.Timeouts, loop: EventLoop, context: Context) {
        self.loop = loop
        self.context = context
        self.write = write
        self.pool = pool
        self.timeouts = timeouts
        coordinator = Coordinator(seq: seq, prepare: write.prepare(seq: seq), participants: participants)
        phase = coordinator.phase
    }

    var seq: UInt64 { coordinator.seq }

    /// Starts the transaction and blocks the calling (worker) thread until it finishes.
    func run() -> Coordinator.Outcome {
        loop.execute {
            self.armTimer(ms: self.timeouts.prepareTimeoutMs)
            self.feed(.start)
        }
        finished.wait()
        return outcome!
    }

    /// Feeds `event` on the event loop (from any thread).
    func post(_ event: Coordinator.Event) {
        if loop.inEventLoop {
            feed(event)
        } else {
            loop.execute { self.feed(event) }
        }
    }

    /// Gives the waiting worker its outcome (once).
    private func answer(_ result: Coordinator.Outcome) {
        guard outcome == nil else { return }
        outcome = result
        finished.signal()
    }

    private func feed(_ event: Coordinator.Event) {
        guard !done else { return }
        for action in coordinator.handle(event) {
            switch action {
            case .send(let replica, let request):
                send(request, to: replica)
            case .persist(.commit(let seq, let participants)):
                decide(seq: seq, participants: participants)
            case .persist(.end(let seq)):
                context.decisions.recordEnd(seq: seq)
            case .finish(let result):
                if !result.pendingCommit.isEmpty { context.delivery.track(seq: seq, replicas: result.pendingCommit) }
                DeadlineSweeper.current(on: loop).forget(self)
                answer(result)
                done = true
                return
            }
        }
        // The COMMIT record is durable and `com` is on its way: the client can be answered now. A read that
        // reaches a replica before its `com` waits for it (the key is locked), so this stays linearizable.
        if let early = coordinator.committedOutcome { answer(early) }
        if coordinator.phase != phase {
            phase = coordinator.phase
            armTimer(ms: phase == .committing ? timeouts.commitTimeoutMs : timeouts.prepareTimeoutMs)
        }
    }

    /// Every vote was yes: write the COMMIT record unless an in-doubt replica was already promised "abort".
    private func decide(seq: UInt64, participants: [String]) {
        Failpoints.hit("master-after-votes")
        guard context.registry.beginCommit(seq) else {
            post(.decisionVetoed(reason: "aborted: a replica in doubt was told abort first"))
            return
        }
        context.decisions.recordCommit(seq: seq, participants: participants, flushingOn: loop) { [self] in
            for key in write.writtenKeys { context.dirty.record(key) }
            Failpoints.hit("master-after-commit-fsync")
            if Failpoints.isArmed("master-mid-commit-send"), let first = participants.first {
                // Below the failpoint's hit count this returns and the commit goes on as usual.
                DispatchQueue.global().async {
                    self.crashAfterFirstCommit(seq: seq, to: first)
                    self.post(.decisionDurable)
                }
                return
            }
            post(.decisionDurable)
        }
    }

    /// Failpoint "master-mid-commit-send": deliver `com` to the first participant only, then crash, leaving
    /// the others in doubt with a durable COMMIT record on the master.
    private func crashAfterFirstCommit(seq: UInt64, to replica: String) {
        guard let link = pool.link(replica) else { return }
        _ = pool.call(link, .com(seq), timeoutMs: timeouts.commitTimeoutMs)
        Failpoints.hit("master-mid-commit-send")
    }

    private func send(_ request: WireRequest, to replica: String) {
        guard let link = pool.link(replica) else {
            post(.unreachable(replica: replica, reason: "replica \(replica) is not configured"))
            return
        }
        link.send(request) { [self] result in
            switch result {
            case .success(let reply): post(.reply(replica: replica, reply))
            case .failure(let failure): post(.unreachable(replica: replica, reason: failure.reason))
            }
        }
    }

    /// A time-out for the current phase (it replaces the previous phase's).
    private func armTimer(ms: Int) {
        deadline = .now() + .milliseconds(Int64(ms))
        DeadlineSweeper.current(on: loop).watch(self)
    }

    func deadlinePassed() { feed(.timeout) }
}
