import Foundation
import KVCommon
import Logging
import Synchronization

/// Who waits for changes on the master: blocking queries (`?index=N&wait=`) and `GET /watch` streams, each a
/// parked FastCGI request (`ParkedRequest`), so a waiter costs no thread. The master's event loop hands it every
/// published index (`publish`), before the commit's `com` leaves and before its client is answered; it keeps its
/// own copy of the history (sharing the keys' and values' storage with the decision journal's) for resumes and
/// scope indexes read from worker threads, and asks a `WatchRegistry` whom each change wakes.
///
/// Threads: `publish` runs on the event loop; parking, resuming and reads of indexes on FastCGI workers; woken
/// queries are answered and streams written on the `WatchWorkers`; a timer thread ends blocking queries at their
/// deadline and sends heartbeats. The state is one mutex; a stream's own lock nests inside it, never the reverse.
final class WatchHub: @unchecked Sendable {
    typealias Scope = ChangeHistory.Scope

    /// Why a stream was not opened.
    enum Refusal: Error {
        case compacted(ChangeHistory.Compacted)
        /// The resume point is beyond the newest index.
        case future(newest: UInt64)
        /// `watch.watchers_max` waiters are held.
        case full
    }

    private struct Query {
        var request: ParkedRequest
        var answer: () -> HTTPResponse
    }

    private struct State {
        var history: ChangeHistory
        var registry = WatchRegistry<UInt64>()
        var queries: [UInt64: Query] = [:]
        var streams: [UInt64: WatchStream] = [:]
        var nextID: UInt64 = 1
    }

    let settings: ClusterConfig.Watch
    private let state: Mutex<State>
    /// The newest published index, readable without the lock: every read reports it, from many threads at once
    /// (under the mutex they spun on each other, 17% of the master's CPU in gets at 64 connections).
    private let newest: Atomic<UInt64>
    private let workers: WatchWorkers
    private let logger: Logger
    private let timer = NSCondition()
    /// The earliest deadline the timer thread sleeps toward (UInt64.max: none but the heartbeat).
    private var timerWake = UInt64.max

    init(history: ChangeHistory, settings: ClusterConfig.Watch, logger: Logger, threads: Int = 2) {
        self.settings = settings
        self.logger = logger
        state = Mutex(State(history: history))
        newest = Atomic(history.lastIndex)
        workers = WatchWorkers(threads: threads, name: "watch")
        let thread = Thread { [self] in runTimer() }
        thread.name = "watch-timer"
        thread.stackSize = 256 << 10
        thread.start()
    }

    // MARK: - From the event loop

    /// Index `index` is published with `changes`: wakes the blocking queries and feeds the streams in scope.
    func publish(_ index: UInt64, _ changes: [ChangeHistory.Change]) {
        let woken = state.withLock { state -> [Query] in
            state.history.append(index: index, changes)
            newest.store(index, ordering: .releasing)
            guard !changes.isEmpty, state.registry.count > 0 else { return [] }
            let (queries, streams) = state.registry.changed(changes.map(\.key))
            for id in streams {
                // Queued under the hub's lock: a stream opened concurrently queues its replay first.
                guard let stream = state.streams[id] else { continue }
                stream.enqueue(WatchEvents.events(changes.filter { stream.scope.contains($0.key) }))
            }
            return queries.compactMap { state.queries.removeValue(forKey: $0) }
        }
        for query in woken { complete(query) }
    }

    // MARK: - From worker threads

    /// The newest published index: what a read reports (`X-Kv-Index`), taken before the read is sent. Every
    /// change up to it is in what the read returns, since each was prepared on every replica (its keys locked)
    /// before it was published.
    var lastIndex: UInt64 { newest.load(ordering: .acquiring) }

    /// The newest change in `scope` if it is still kept, else the oldest index the history may have dropped
    /// (what a blocking query's answer reports, so that one that timed out gives back the index it was asked).
    func index(in scope: Scope) -> UInt64 {
        state.withLock { state in state.history.lastChange(in: scope) ?? state.history.compactedThrough }
    }

    /// Whether something in `scope` may have changed after `index` (true when the history no longer tells).
    func changed(in scope: Scope, after index: UInt64) -> Bool {
        state.withLock { Self.changed($0.history, scope, after: index) }
    }

    var watchers: Int { state.withLock { $0.registry.count } }

    /// `/status`'s `watch`: waiters held now and what the history keeps.
    func statusJSON() -> [UInt8] {
        state.withLock { state in
            var writer = JSONWriter(capacity: 192)
            writer.field("blocking_queries", state.queries.count)
            writer.field("streams", state.streams.count)
            writer.field("watchers_max", settings.watchersMax)
            writer.field("history_changes", state.history.count)
            writer.field("history_bytes", state.history.bytes)
            writer.field("oldest_index", state.history.compactedThrough + 1)
            writer.field("last_index", state.history.lastIndex)
            return writer.finish()
        }
    }

    /// Parks a blocking query: `answer` (a fresh read) is sent once something in `scope` changes after `index`,
    /// or after `waitMs`. Answered at once when a change came in since the caller looked.
    func park(_ scope: Scope, after index: UInt64, waitMs: Int, request: ParkedRequest,
              answer: @escaping () -> HTTPResponse, full: () -> HTTPResponse) {
        enum Admission { case now, parked(UInt64), full }
        let deadline = Self.nowMs() + UInt64(waitMs)
        let admission = state.withLock { state -> Admission in
            if Self.changed(state.history, scope, after: index) { return .now }
            guard state.registry.count < settings.watchersMax else { return .full }
            let id = state.nextID
            state.nextID += 1
            state.registry.addQuery(id, scope: scope, deadlineMs: deadline)
            state.queries[id] = Query(request: request, answer: answer)
            return .parked(deadline)
        }
        switch admission {
        case .now: complete(Query(request: request, answer: answer))
        case .full: request.finish(full().cgiBytes())
        case .parked(let deadline): wakeTimer(by: deadline)
        }
    }

    /// Opens a stream of the changes in `scope` after `from` (nil: from now on): replays the kept ones, then
    /// `ready`, then every change as it is published. On a refusal nothing was written to `request`.
    func openStream(_ scope: Scope, from: UInt64?, request: ParkedRequest) -> Refusal? {
        state.withLock { state -> Refusal? in
            let newest = state.history.lastIndex
            let start = from ?? newest
            guard start <= newest else { return .future(newest: newest) }
            let replay: [ChangeHistory.Change]
            switch state.history.since(start, in: scope) {
            case .failure(let compacted): return .compacted(compacted)
            case .success(let changes): replay = changes
            }
            guard state.registry.count < settings.watchersMax else { return .full }
            let id = state.nextID
            state.nextID += 1
            let stream = WatchStream(id: id, scope: scope, request: request, workers: workers) { [weak self] id in
                self?.removeStream(id)
            }
            state.registry.addStream(id, scope: scope)
            state.streams[id] = stream
            stream.enqueue(WatchEvents.head(index: newest) + WatchEvents.events(replay) + WatchEvents.ready(index: newest))
            return nil
        }
    }

    // MARK: - Inside

    private static func changed(_ history: ChangeHistory, _ scope: Scope, after index: UInt64) -> Bool {
        if index < history.compactedThrough { return true }
        return (history.lastChange(in: scope) ?? 0) > index
    }

    private func complete(_ query: Query) {
        workers.submit { query.request.finish(query.answer().cgiBytes()) }
    }

    private func removeStream(_ id: UInt64) {
        state.withLock { state in
            state.registry.remove(id)
            state.streams[id] = nil
        }
    }

    private func wakeTimer(by deadline: UInt64) {
        timer.lock()
        if deadline < timerWake {
            timerWake = deadline
            timer.signal()
        }
        timer.unlock()
    }

    /// Ends blocking queries at their deadline (answered with the state as it is) and sends heartbeats.
    private func runTimer() {
        let heartbeatMs = UInt64(settings.heartbeatMs)
        var nextHeartbeat = Self.nowMs() + heartbeatMs
        while true {
            let now = Self.nowMs()
            let (expired, streams) = state.withLock { state -> ([Query], [WatchStream]) in
                let expired = state.registry.expired(nowMs: now).compactMap { state.queries.removeValue(forKey: $0) }
                return (expired, now >= nextHeartbeat ? Array(state.streams.values) : [])
            }
            for query in expired { complete(query) }
            if now >= nextHeartbeat {
                for stream in streams { stream.heartbeat() }
                nextHeartbeat = now + heartbeatMs
            }
            // The next deadline is read with the timer's lock held: a query parked after this read signals only
            // once this thread waits (the wait releases the lock), so its wake-up is never lost.
            timer.lock()
            let next = state.withLock { $0.registry.nextDeadline() }
            timerWake = min(next ?? .max, nextHeartbeat)
            let current = Self.nowMs()
            if timerWake > current { _ = timer.wait(until: Date(timeIntervalSinceNow: Double(timerWake - current) / 1000)) }
            timer.unlock()
        }
    }

    static func nowMs() -> UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000 }
}
