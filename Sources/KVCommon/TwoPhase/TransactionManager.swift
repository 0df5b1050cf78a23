// TransactionManager: every rule of the master, as one value-type state machine (the transaction manager, TM,
// of the TwoPhase TLA+ module in Gray and Lamport's "Consensus on Transaction Commit", plus what a real master
// needs around it). `MasterFCGI` and the simulation only feed it events and execute its actions.
//
// It holds:
// - the transactions running now, one `Coordinator` each, with the registry that makes "commit" and "abort"
//   race in one place: a running transaction either enters its commit (its COMMIT is logged) or is promised
//   to abort to an in-doubt replica that asked first, never both;
// - admission: the in-flight limit, the write gate (writes wait while a pause is pending or held: a
//   replica joining, a reload switching configurations, a divergence check), the seq allocator;
// - the decision log's rules (`DecisionJournal`): COMMIT forced before `com`, END lazy, compaction;
// - commit delivery: commits whose acks did not all arrive are re-sent with backoff until acknowledged;
// - in-doubt answers, to replicas that report in-doubt seqs when they connect and to `qry` on query_listen;
// - membership: the configured replicas, which are in sync, state transfers (`StateTransfer`), reloads and
//   the bootstrap of a new cluster.
//
// Messages in: client writes, replica replies and failures, link up/down, timers, decision-log durability,
// queries, pauses, reloads. Actions out: sends, answers, file actions, persisted state, timers, the view.
//
// Invariants:
// - A seq is issued at most once per seq epoch, and the epoch is persisted (`.persist`) before any seq of it.
// - `com` for a seq is sent only after `.logged(.commit(seq))` (the COMMIT record is durable).
// - A transaction vetoed by an in-doubt answer never logs a COMMIT; one that logged its COMMIT is never
//   answered "abort".
// - The client is answered at most once; a commit's answer comes once the decision is durable.
// - A pause is granted only when every admitted write has been answered.

/// The master's rules. Not thread-safe: the executor feeds one event at a time.
public struct TransactionManager {
    public typealias WriteID = UInt64
    public typealias QueryID = UInt64
    public typealias PauseID = UInt64
    public typealias ReloadID = UInt64

    public static let seqsPerEpoch: UInt64 = 1_000_000_000

    /// What the master is configured with (from cluster.yaml; a reload brings new settings).
    public struct Settings: Equatable, Sendable {
        public var masterID: String
        public var replicas: [ClusterConfig.Replica]
        public var timeouts: ClusterConfig.Timeouts
        public var inFlightMax: Int
        /// The decision log compacts once its current generation passes this many bytes.
        public var compactBytes: Int
        /// The change history's bounds (`watch.history_max`, `watch.history_bytes_max`).
        public var historyMax = 10_000
        public var historyBytesMax = 16 << 20
        /// How often replicas that are not connected are probed (and membership looked at).
        public var probeIntervalMs = 500
        /// Whether and when a failed participant is ejected (`availability:`).
        public var availability = ClusterConfig.Availability()

        public init(masterID: String, replicas: [ClusterConfig.Replica], timeouts: ClusterConfig.Timeouts,
                    inFlightMax: Int, compactBytes: Int) {
            self.masterID = masterID
            self.replicas = replicas
            self.timeouts = timeouts
            self.inFlightMax = inFlightMax
            self.compactBytes = compactBytes
        }

        public init(config: ClusterConfig) {
            self.init(masterID: config.master.id, replicas: config.replicas, timeouts: config.timeouts,
                      inFlightMax: config.limits.inFlightTransactionsMax, compactBytes: config.storage.snapshotLogBytesMax)
            historyMax = config.watch.historyMax
            historyBytesMax = config.watch.historyBytesMax
            availability = config.availability
        }

        func replica(_ id: String) -> ClusterConfig.Replica? { replicas.first { $0.id == id } }
    }

    /// A write a client asks for: the phase-one request (its seq is filled in) and what it writes if it commits:
    /// `writes`, or for a transaction whose compares fail, `failureWrites` (the change history records them).
    public struct WriteIntent: Equatable, Sendable {
        public var prepare: WireRequest
        public var writes: [WriteOp]
        public var failureWrites: [WriteOp]
        /// The lease its puts attach keys to (0: none), as watchers see it.
        public var lease: UInt64
        /// A lease's expiry: watchers see its deletes as `expire`.
        public var expiry: Bool
        public init(prepare: WireRequest, writes: [WriteOp], failureWrites: [WriteOp] = [], lease: UInt64 = 0,
                    expiry: Bool = false) {
            self.prepare = prepare
            self.writes = writes
            self.failureWrites = failureWrites
            self.lease = lease
            self.expiry = expiry
        }

        /// A single put or delete.
        public init(_ op: WriteOp) { self.init(prepare: op.prepareRequest(seq: 1), writes: [op]) }

        /// Keys that may change if it commits (for replicas being synced meanwhile).
        public var writtenKeys: [[UInt8]] { Array(Set((writes + failureWrites).map(\.key))) }
    }

    public enum WriteAnswer: Equatable, Sendable {
        /// The transaction ran: committed (possibly still delivering `com`) or aborted.
        case outcome(Coordinator.Outcome)
        /// Not started: nothing was written, a retry is safe; the text says why.
        case refused(String)
    }

    /// What a reply answers.
    public enum Call: Hashable, Sendable {
        /// A running transaction's prepare, `com` or `abrt` (a link returns replies in request order).
        case txn(UInt64)
        /// A `com` re-sent to a replica that has not acknowledged it.
        case deliver(UInt64)
        /// The outcome sent to a replica that reported `seq` in doubt.
        case resolve(UInt64, commit: Bool)
        /// The `stat` a new connection starts with: in-doubt seqs, whether the replica is in sync.
        case connect
        /// A periodic `stat` to a replica that is not connected.
        case probe
        /// `join` of a new cluster's empty replicas, in bootstrap round `Int`.
        case bootstrap(Int)
        /// `reset` of a replica a transfer left half filled, before a bootstrap.
        case bootstrapReset
        /// `memb`: the participants announced to a replica.
        case membership
        /// A state transfer's request, for the target replica `String`, attempt `Int`.
        case transfer(String, attempt: Int, StateTransfer.Step)
    }

    /// Who holds writes back.
    public enum PauseOwner: Hashable, Sendable {
        case client(PauseID)
        case reload(ReloadID)
        case transfer(String)
    }

    public enum Timer: Hashable, Sendable {
        /// The current phase of transaction `seq` ran out of time.
        case phase(UInt64)
        case redeliver(UInt64)
        /// A write waiting behind a pause gives up.
        case admission(WriteID)
        /// A pause that could not be granted in time.
        case pause(PauseOwner)
        case probe
        case transferStep(String)
        case transferRetry(String)
        /// Links a reload dropped are closed once the writes of the old configuration had time to finish.
        case closeLinks(ReloadID)
        /// Replica `String` has been failing for `availability.eject_after_ms` (unless it answered since).
        case eject(String)
        /// Replica `String` stayed in sync since it rejoined: its ejections no longer count towards damping.
        case ejectionCalm(String)
    }

    public enum Event: Equatable {
        /// Right after `init`: persists the epochs, re-sends undelivered commits, connects to every replica.
        case start
        case write(WriteID, WriteIntent)
        case replied(ClusterConfig.Replica, Call, WireReply)
        /// The request got no reply: the replica was unreachable, or the connection broke first.
        case failed(ClusterConfig.Replica, Call, String)
        /// A new connection to the replica is up (nothing was sent on it yet).
        case connected(ClusterConfig.Replica)
        case disconnected(ClusterConfig.Replica)
        case timer(Timer)
        /// A forced decision-log append is durable.
        case logged(DecisionLogToken)
        /// A replica asks `seq;qry;;` on query_listen.
        case query(QueryID, seq: UInt64)
        /// Hold writes back (answered with `.paused` or `.pauseFailed`) until `.resume`.
        case pause(PauseID, timeoutMs: Int)
        case resume(PauseID)
        /// A validated configuration to switch to; `notes` are added to the answer.
        case reload(Settings, ReloadID, notes: [String])
        /// Resync the replicas that differ from the majority (made with writes paused, fed before they resume).
        case repair(RepairPlan)
    }

    public enum Action: Equatable {
        case send(ClusterConfig.Replica, WireRequest, Call)
        case answerWrite(WriteID, WriteAnswer)
        /// Index `UInt64` is durable and every lower one was published before: hand its changes to watchers
        /// (before anything that depends on the commit, such as its `com` or its answer).
        case changed(UInt64, [ChangeHistory.Change])
        case answerQuery(QueryID, WireReply)
        case answerReload(ReloadID, ok: Bool, message: String)
        case paused(PauseID)
        case pauseFailed(PauseID, String)
        /// A decision-log file action (`DecisionJournal.FileAction`), in order.
        case log(DecisionJournal.FileAction)
        /// Replace the state file durably before anything after this action happens.
        case persist(MasterState)
        case startTimer(Timer, ms: Int)
        case cancelTimer(Timer)
        /// Which replicas take part now (reads follow it).
        case publish(MembershipView)
        case closeLink(ClusterConfig.Replica)
        /// A line for the operator's log.
        case note(NoteLevel, String)
        /// A replica was ejected (the membership without it is persisted and published before this).
        case ejected(Ejection)
    }

    public enum NoteLevel: Equatable, Sendable { case info, notice, warning }

    /// What a reply of a transaction's outcome query says.
    enum Resolution: Equatable {
        case commit, abort, pending
        /// The decision log does not cover the seq (issued before it was lost or rewound, or never issued here).
        case unknown
    }

    enum Registration: Equatable { case running, vetoed, committing }

    struct Running {
        var coordinator: Coordinator
        var writeID: WriteID
        var intent: WriteIntent
        /// The change index its COMMIT got (0 until it is logged).
        var index: UInt64 = 0
        var participants: [ClusterConfig.Replica]
        /// Configured replicas ejected when it began: it is not written to them.
        var ejected: [String]
        var registration = Registration.running
        var answered = false
        var phase: Coordinator.Phase
    }

    struct Delivery {
        var unacked: Set<String>
        var attempts = 0
        /// Owed only to replicas cluster.yaml no longer names: not sent, not ended, until one is configured again.
        var parked = false
    }

    /// A configured replica and what the master knows of it.
    struct Slot {
        var replica: ClusterConfig.Replica
        /// Being synced: it neither votes nor serves reads.
        var syncing: Bool
        var connected = false
        /// What its last `stat` said about being in sync (nil: not heard from yet).
        var lastJoined: Bool?
        /// The seq it joined at, as the persisted membership records it (0: taken in without a recorded join).
        var joinedAt: UInt64 = 0
        /// Keys and whether anything was in doubt, at its last `stat` (for the bootstrap of an empty cluster).
        var lastKeys: Int?
        var lastInDoubt = false
        /// Syncing because it was ejected (write answers list it).
        var ejected = false
    }

    struct Transfer {
        var replica: ClusterConfig.Replica
        /// The replicas it may copy from (a repair's majority); nil: any in-sync one.
        var sources: Set<String>?
        var attempt = 0
        /// The attempt under way, or nil while waiting to retry.
        var current: StateTransfer?
        var source: ClusterConfig.Replica?
        /// Keys committed since the attempt began (recorded when their COMMIT is durable).
        var dirty: Set<[UInt8]> = []
        var progress: StateTransfer.Progress?
        /// The seq the target joins at (set when writes are paused for the final step).
        var joinedAt: UInt64 = 0
    }

    public internal(set) var settings: Settings
    var state: MasterState
    var journal: DecisionJournal
    var counter: UInt64 = 0
    var slots: [Slot] { didSet { refreshWritePath() } }
    var removed: [ClusterConfig.Replica] = []
    var running: [UInt64: Running] = [:]
    /// Writes waiting behind a pause, in arrival order.
    var admissions: [(id: WriteID, intent: WriteIntent)] = []
    var pauseQueue: [PauseOwner] = []
    var pausedBy: PauseOwner?
    var deliveries: [UInt64: Delivery] = [:]
    var transfers: [String: Transfer] = [:]
    var pendingReloads: [ReloadID: (settings: Settings, notes: [String])] = [:]
    /// In-sync replicas that have answered a `stat` since the start: no seq is issued until all have, so the
    /// epoch is known to be above every seq they hold.
    var reported: Set<ClusterConfig.Replica> = [] { didSet { refreshWritePath() } }
    /// Derived from `slots` and `reported` whenever they change (rarely), since every write reads them.
    private(set) var participantReplicas: [ClusterConfig.Replica] = []
    private(set) var participantIDs: [String] = []
    /// Configured replicas out of the in-sync set because they were ejected (write answers list them).
    public private(set) var ejectedIDs: [String] = []
    /// Whether every in-sync replica has reported since the start (see `floorSeqs`).
    private(set) var admissionOpen = false
    /// Until every in-sync replica has reported once: a master may take over from another only while starting.
    private(set) var starting = true
    /// Why this master takes no more writes: another master took over (see `TransactionManager+Fencing`).
    var fencedBy: String?
    /// Whether the state file was missing at start (a new or lost directory).
    let fresh: Bool
    /// Numbers the bootstraps: a late `join` ack of an earlier round (before a replica was found out of sync
    /// again, say) takes nobody in.
    var bootstrapRound = 0
    /// Numbers the attempts of every transfer, so a reply of an abandoned one is never taken for a later one's.
    var transferAttempts = 0
    var closing: [ReloadID: [ClusterConfig.Replica]] = [:]
    /// In-sync replicas failing now (unreachable, or no answer in time), with the latest reason; an
    /// `.eject` timer runs for each while ejection is on.
    var failing: [String: String] = [:]
    /// Replicas ejected recently, for damping and `/status` (see TransactionManager+Ejection).
    var ejections: [String: Ejection] = [:]
    /// Failing replicas the floor kept in (the warning is logged once per outage).
    var ejectionsRefused: Set<String> = []
    /// Per failing replica whose ejection is due: the other in-sync replicas that answered `stat` since it was.
    var witnesses: [String: Set<String>] = [:]

    /// Who this process says it is in every link's handshake, and so in the replicas' fences: the master's id and
    /// a token of this run, so that two processes of one id (one started on a copy of the other's decision log)
    /// never pass for each other even at one seq epoch.
    public let linkIdentity: String

    /// `recovered` is the state file as found (nil if there was none), `decisions` the decision log's files,
    /// `run` a token unique to this run of the process (see `linkIdentity`).
    public init(settings: Settings, recovered: MasterState?, decisions: [DecisionJournal.Generation], run: String = "") {
        self.settings = settings
        linkIdentity = run.isEmpty ? settings.masterID : "\(settings.masterID)/\(run)"
        state = recovered ?? MasterState()
        fresh = recovered == nil
        journal = DecisionJournal(recovered: decisions, compactBytes: settings.compactBytes,
                                  historyMax: settings.historyMax, historyBytesMax: settings.historyBytesMax)
        let members = state.members
        // Only the replicas the persisted membership names, at the same address and disk, are in sync; any other
        // configured replica may be empty or stale and is synced first. Without a persisted membership (a
        // directory from an earlier version) every configured replica is taken in, as that version did.
        slots = settings.replicas.map { replica in
            guard let members else { return Slot(replica: replica, syncing: false) }
            guard let member = members.first(where: { $0.replica == replica }) else {
                return Slot(replica: replica, syncing: true)
            }
            return Slot(replica: replica, syncing: false, joinedAt: member.joinedAt)
        }
        refreshWritePath()
    }

    private mutating func refreshWritePath() {
        let participating = slots.filter { !$0.syncing }
        participantReplicas = participating.map(\.replica)
        participantIDs = participating.map(\.replica.id)
        ejectedIDs = slots.filter(\.ejected).map(\.replica.id)
        admissionOpen = participating.allSatisfy { reported.contains($0.replica) }
        if admissionOpen && !reported.isEmpty { starting = false }
    }

    /// Why the master must not start with these settings: cluster.yaml names none of the replicas the persisted
    /// membership counts in sync (each was removed, moved or given another disk), so nothing would hold the
    /// committed writes and every replica would wait forever for a state transfer. Nil when it may start.
    public var startRefusal: String? { Self.startRefusal(settings: settings, recovered: state) }

    /// `startRefusal` before a manager exists (so the master can stop before it opens its decision log).
    public static func startRefusal(settings: Settings, recovered: MasterState?) -> String? {
        guard let members = recovered?.members, !members.isEmpty,
              !members.contains(where: { settings.replicas.contains($0.replica) }) else { return nil }
        let names = members.map { "\($0.replica.id)@\($0.replica.address) (data \($0.replica.dataDir))" }
        return "cluster.yaml names none of the replicas in sync (\(names.joined(separator: ", "))), so no replica would "
            + "hold the committed writes: put one of them back as it was; if their data was moved on purpose, remove "
            + "master-state from the decision log directory to take every configured replica in (see docs/OPERATIONS.md)"
    }

    public mutating func handle(_ event: Event) -> [Action] {
        var actions: [Action] = []
        handle(event, into: &actions)
        return actions
    }

    /// `handle`, appending to `actions`: an executor that reuses one buffer allocates nothing per event for it.
    public mutating func handle(_ event: Event, into actions: inout [Action]) {
        switch event {
        case .start: start(into: &actions)
        case .write(let id, let intent): write(id, intent, into: &actions)
        case .replied(let replica, let call, let reply): replied(replica, call, reply, into: &actions)
        case .failed(let replica, let call, let reason): failed(replica, call, reason, into: &actions)
        case .connected(let replica): connected(replica, into: &actions)
        case .disconnected(let replica):
            if let index = slotIndex(replica) { slots[index].connected = false }
            replicaFailing(replica, "its connection was lost", into: &actions)
        case .timer(let timer): fired(timer, into: &actions)
        case .logged(.commit(let seq)): commitDurable(seq, into: &actions)
        case .logged(.compaction(let generation)):
            actions += journal.compactionDurable(generation: generation).map(Action.log)
        case .query(let id, let seq): actions.append(.answerQuery(id, queryAnswer(seq, into: &actions)))
        case .pause(let id, let timeoutMs): requestPause(.client(id), timeoutMs: timeoutMs, into: &actions)
        case .resume(let id):
            if pausedBy == .client(id) { releasePause(into: &actions) }
        case .reload(let settings, let id, let notes): reload(settings, id, notes: notes, into: &actions)
        case .repair(let plan): repair(plan, into: &actions)
        }
    }

    private mutating func fired(_ timer: Timer, into actions: inout [Action]) {
        switch timer {
        case .phase(let seq):
            if settings.availability.ejectAfterMs > 0 { phaseTimedOut(seq, into: &actions) }
            drive(seq, .timeout, into: &actions)
        case .redeliver(let seq): redeliver(seq, into: &actions)
        case .admission(let id): admissionTimedOut(id, into: &actions)
        case .pause(let owner): pauseTimedOut(owner, into: &actions)
        case .probe: probe(into: &actions)
        case .transferStep(let id): transferEvent(id, .deadlinePassed, into: &actions)
        case .transferRetry(let id): startAttempt(id, into: &actions)
        case .closeLinks(let id): actions += (closing.removeValue(forKey: id) ?? []).map(Action.closeLink)
        case .eject(let id): ejectionDue(id, into: &actions)
        case .ejectionCalm(let id): ejections[id] = nil
        }
    }

    private mutating func start(into actions: inout [Action]) {
        state.seqEpoch += 1
        state.configEpoch += 1
        // Announced under a new epoch: an announcement of the last run still in flight is then older.
        state.membershipEpoch += 1
        state.members = members
        counter = 0
        // A new directory knows every seq from its first epoch on (a lost one's older seqs are not its to judge).
        if fresh { state.presumeAbortFrom = state.seqEpoch * Self.seqsPerEpoch }
        actions.append(.persist(state))
        actions += journal.startUp().map(Action.log)
        for (seq, participants) in journal.pending.sorted(by: { $0.key < $1.key }) {
            actions.append(.note(.notice, "re-sending commit \(seq) to \(participants.joined(separator: ", ")) "
                + "(no END in the decision log)"))
            track(seq, participants, into: &actions)
        }
        actions.append(.publish(view))
        for slot in slots { actions.append(.send(slot.replica, .stat, .probe)) }
        actions.append(.startTimer(.probe, ms: settings.probeIntervalMs))
    }

    // MARK: - Reading the state

    /// The seq epoch of this run.
    public var seqEpoch: UInt64 { state.seqEpoch }
    /// Why this master is fenced (another one took over), nil while it runs the cluster.
    public var fenced: String? { fencedBy }

    public var configEpoch: UInt64 { state.configEpoch }

    /// The published changes, within their bounds (what watchers resume from after a restart).
    public var history: ChangeHistory { journal.history }

    /// Transactions running now.
    public var inFlight: Int { running.count }

    /// Whether a reload waits for running writes before it switches configurations.
    public var reloadPending: Bool { !pendingReloads.isEmpty }

    /// Commits still being delivered.
    public var pendingCommits: Int { deliveries.count }

    /// Of those, the ones owed only to replicas cluster.yaml no longer names (kept until they are named again).
    public var parkedCommits: Int { deliveries.values.filter(\.parked).count }

    /// The participants of a running transaction (for the executor's crash points).
    public func participants(of seq: UInt64) -> [ClusterConfig.Replica] { running[seq]?.participants ?? [] }

    /// The state transfer of `replica`: under way, or how the last attempt failed.
    public func transferProgress(of replica: String) -> StateTransfer.Progress? {
        transfers[replica]?.current?.progress ?? transfers[replica]?.progress
    }

    func slotIndex(_ replica: ClusterConfig.Replica) -> Int? { slots.firstIndex { $0.replica == replica } }
}
