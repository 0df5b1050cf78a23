// StateTransfer: one attempt at bringing a replica that is out of sync (the target) to exactly the committed
// state of one that is in sync (the source), as a value-type state machine the TransactionManager drives.
//
// Steps: `reset` the target (empty, out of sync) -> `snap` the source (a consistent copy of its key space) ->
// `page` by page, each page's entries `load`ed into the target (pipelined, every ack awaited) -> catch-up
// rounds: the keys committed since the attempt began (the manager records them) are read from the source
// (`get`) and loaded (or `drop`ped) into the target, until fewer than 64 remain or ten rounds have passed ->
// writes paused (the manager grants it once no write is unanswered) -> the last recorded keys copied ->
// `stat` of both -> only if the source holds no undecided transaction and key count and content digest are
// equal: `join` the target. Anything else fails
// the attempt (the manager retries later); a replica that differs never joins.
//
// Invariants:
// - Every step waits for all of its replies before the next one starts; a reply of an older attempt is ignored.
// - `join` is sent only with writes paused and after the digests were found equal in that same pause.

/// One attempt of a state transfer. The manager supplies the target and source and executes the actions.
public struct StateTransfer {
    /// Which replica a request goes to.
    public enum Role: Equatable, Sendable { case source, target }

    /// What a reply answers (with the attempt number, so replies of an abandoned attempt are ignored).
    public enum Step: Hashable, Sendable {
        case reset, snap, page, load, read(Int), stat(Role), join
    }

    public enum Action: Equatable {
        case send(Role, WireRequest, Step)
        /// Hold writes back; the manager answers with `.paused` (or fails the attempt on time-out).
        case pause
        /// The step's deadline: fail the attempt unless every reply arrived within `ms`.
        case deadline(ms: Int)
        /// The target joined: writes may go on with it as a participant.
        case joined
        /// The attempt failed; writes (if paused) go on without the target.
        case failed(String)
    }

    public enum Event: Equatable {
        case begin
        case reply(Step, WireReply)
        case unreachable(Step, String)
        /// The manager paused writes for the final step; `dirty` are the keys committed since the last round, and
        /// `joinAt` the seq the target joins at (every seq issued so far is at or below it).
        case paused(dirty: [[UInt8]], joinAt: UInt64)
        /// The keys committed since the last round (for a catch-up round).
        case caughtUp(dirty: [[UInt8]])
        case deadlinePassed
    }

    public struct Progress: Equatable, Sendable {
        public var phase: String
        public var loaded: Int
        public var total: Int
        public var attempt: Int
        public var error: String?
    }

    private enum Phase: Equatable {
        case idle, resetting, opening, paging(outstanding: Int, last: Bool), reading(outstanding: Int, final: Bool)
        case loading(outstanding: Int, final: Bool), awaitingPause, verifying, joining, done
    }

    public let sourceID: String
    public let readTimeoutMs: Int
    public private(set) var progress: Progress
    private var phase: Phase = .idle
    private var scan: UInt64 = 0
    private var rounds = 0
    /// The keys being copied in this round, and what the source said about each.
    private var keys: [[UInt8]] = []
    private var copies: [WireRequest?] = []
    private var joinAt: UInt64 = 0
    private var sourceStat: ReplicaStat?
    private var targetStat: ReplicaStat?

    public init(source: String, attempt: Int, readTimeoutMs: Int) {
        sourceID = source
        self.readTimeoutMs = readTimeoutMs
        progress = Progress(phase: "starting", loaded: 0, total: 0, attempt: attempt, error: nil)
    }

    /// The catch-up round wants the keys committed so far (`caughtUp`) next.
    public var wantsDirtyKeys: Bool { phase == .reading(outstanding: 0, final: false) && keys.isEmpty }

    public mutating func handle(_ event: Event) -> [Action] {
        guard phase != .done else { return [] }
        switch event {
        case .begin:
            phase = .resetting
            progress.phase = "reset"
            return [.send(.target, WireRequest(seq: UInt64(progress.attempt), command: .reset), .reset), deadline()]
        case .deadlinePassed:
            return fail("\(progress.phase): no answer within the time-out")
        case .unreachable(_, let reason):
            return fail(reason)
        case .reply(let step, let reply):
            return replied(step, reply)
        case .caughtUp(let dirty):
            guard case .reading(0, false) = phase else { return [] }
            return copyRound(dirty, final: false)
        case .paused(let dirty, let joinAt):
            guard phase == .awaitingPause else { return [] }
            self.joinAt = joinAt
            progress.phase = "verifying"
            return copyRound(dirty, final: true)
        }
    }

    private mutating func replied(_ step: Step, _ reply: WireReply) -> [Action] {
        switch (phase, step) {
        case (.resetting, .reset):
            guard reply.status else { return fail("reset on \(reply.server): \(reply.message)") }
            phase = .opening
            return [.send(.source, WireRequest(seq: nil, command: .snap), .snap), deadline()]
        case (.opening, .snap):
            guard reply.status, let id = reply.seq, let total = reply.stat?.keys else {
                return fail("snap on \(reply.server): \(reply.message)")
            }
            scan = id
            progress.total = total
            progress.loaded = 0
            progress.phase = "copying from \(sourceID)"
            return requestPage()
        case (.paging(0, _), .page):
            guard reply.status, let page = reply.page else { return fail("page on \(reply.server): \(reply.message)") }
            progress.loaded += page.entries.count
            if page.entries.isEmpty { return pageLoaded(last: page.done) }
            phase = .paging(outstanding: page.entries.count, last: page.done)
            var actions: [Action] = page.entries.map { .send(.target, $0.loadRequest, .load) }
            actions.append(deadline(requests: page.entries.count))
            return actions
        case (.paging(let outstanding, let last), .load) where outstanding > 0:
            guard reply.status else { return fail("load on \(reply.server): \(reply.message)") }
            phase = .paging(outstanding: outstanding - 1, last: last)
            return outstanding == 1 ? pageLoaded(last: last) : []
        case (.reading(let outstanding, let final), .read(let index)) where outstanding > 0 && index < keys.count:
            let key = keys[index]
            if reply.status {
                copies[index] = SyncPage.Entry(key: key, value: reply.value ?? [], version: reply.seq ?? 0,
                                               created: reply.created ?? reply.seq ?? 0).loadRequest
            } else if reply.code == .notFound {
                copies[index] = WireRequest(seq: nil, command: .drop, key: key)
            } else {
                return fail("reading \(keys.count) changed keys from \(sourceID): \(reply.message)")
            }
            phase = .reading(outstanding: outstanding - 1, final: final)
            guard outstanding == 1 else { return [] }
            let requests = copies.compactMap { $0 }
            phase = .loading(outstanding: requests.count, final: final)
            var actions: [Action] = requests.map { .send(.target, $0, .load) }
            actions.append(deadline(requests: requests.count))
            return actions
        case (.loading(let outstanding, let final), .load) where outstanding > 0:
            guard reply.status else { return fail("load on \(reply.server): \(reply.message)") }
            phase = .loading(outstanding: outstanding - 1, final: final)
            return outstanding == 1 ? roundCopied(final: final) : []
        case (.verifying, .stat(let role)):
            guard reply.status, let stat = reply.stat else { return fail("stat on \(reply.server): \(reply.message)") }
            if role == .source { sourceStat = stat } else { targetStat = stat }
            guard let a = sourceStat, let b = targetStat else { return [] }
            // A transaction still prepared at the source may have committed (its `com` on the way): neither its
            // snapshot nor the keys recorded since the attempt began need hold it, and equal digests would hide that.
            guard a.inDoubt.isEmpty else {
                return fail("\(sourceID) holds undecided transactions \(a.inDoubt.map(\.seq)); copying once they are "
                    + "decided")
            }
            guard a.keys == b.keys, a.digest == b.digest else {
                return fail("digest differs after copy (\(sourceID): \(a.keys) keys \(a.digestHex), target: "
                    + "\(b.keys) keys \(b.digestHex))")
            }
            phase = .joining
            // The join names this attempt's reset: a target that restarted (wiped) since refuses it.
            return [.send(.target, WireRequest(seq: joinAt, command: .join, value: Array(String(progress.attempt).utf8)),
                          .join), deadline()]
        case (.joining, .join):
            guard reply.status else { return fail("join on \(reply.server): \(reply.message)") }
            phase = .done
            progress.phase = "joined"
            progress.error = nil
            return [.joined]
        default:
            return []
        }
    }

    private mutating func requestPage() -> [Action] {
        phase = .paging(outstanding: 0, last: false)
        return [.send(.source, WireRequest(seq: scan, command: .page), .page), deadline()]
    }

    private mutating func pageLoaded(last: Bool) -> [Action] {
        guard last else { return requestPage() }
        rounds = 0
        keys = []
        phase = .reading(outstanding: 0, final: false)
        return []  // the manager answers `wantsDirtyKeys` with `.caughtUp`
    }

    /// Copies `dirty` from the source to the target: reads, then loads or drops.
    private mutating func copyRound(_ dirty: [[UInt8]], final: Bool) -> [Action] {
        keys = dirty
        copies = Array(repeating: nil, count: dirty.count)
        if !final {
            rounds += 1
            progress.phase = "catching up \(dirty.count) keys"
        }
        guard !dirty.isEmpty else { return roundCopied(final: final) }
        phase = .reading(outstanding: dirty.count, final: final)
        var actions: [Action] = dirty.enumerated().map { .send(.source, .get($0.element), .read($0.offset)) }
        actions.append(deadline(requests: dirty.count))
        return actions
    }

    private mutating func roundCopied(final: Bool) -> [Action] {
        let copied = keys.count
        keys = []
        if final {
            phase = .verifying
            sourceStat = nil
            targetStat = nil
            return [.send(.source, .stat, .stat(.source)), .send(.target, .stat, .stat(.target)), deadline()]
        }
        if copied < 64 || rounds >= 10 {
            phase = .awaitingPause
            progress.phase = "verifying"
            return [.pause]
        }
        phase = .reading(outstanding: 0, final: false)
        return []
    }

    private func deadline(requests: Int = 1) -> Action { .deadline(ms: readTimeoutMs + requests / 2) }

    private mutating func fail(_ reason: String) -> [Action] {
        phase = .done
        progress.phase = "retrying"
        progress.error = reason
        return [.failed(reason)]
    }
}
