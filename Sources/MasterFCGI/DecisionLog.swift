import Foundation
import KVCommon
import KVRuntime
import Logging
import NIOCore

/// The master's durable record of commit decisions (presumed abort: aborts are never logged).
///
/// `recordCommit` calls back only once the COMMIT record is fsynced; only then may `com` be sent. `recordEnd`
/// is not forced (it rides along with the next fsync): losing it only means re-sending an idempotent `com`
/// after a restart.
/// In memory it keeps the commits that have no END yet, which is all in-doubt resolution needs.
///
/// Files: `decisions-<generation>.log`. When the current file passes `compactBytes`, the log switches to a
/// new file that starts with a copy of every COMMIT still without END, and the old file is deleted once those
/// copies are durable. Start-up reads every file in generation order.
final class DecisionLog: @unchecked Sendable {
    private let log: GroupCommitLog
    private let directory: String
    private let compactBytes: Int
    private let logger: Logger
    private let lock = NSLock()
    /// Durable COMMITs without END (what resolution may rely on).
    private var pending: [UInt64: [String]] = [:]
    /// Commits that ended recently (bounded): a replica that lost its own COMMIT record still learns "commit".
    private var ended = DecisionMemory(capacity: 1 << 20)
    /// COMMITs queued (durable or not) without END: what a compaction must carry over.
    private var logged: [UInt64: [String]] = [:]
    private var generation: UInt64
    private var compacting = false
    /// A flush of queued COMMIT records is already scheduled on an event loop.
    private var flushScheduled = false

    init(directory: String, compactBytes: Int, logger: Logger) throws {
        self.directory = directory
        self.compactBytes = compactBytes
        self.logger = logger
        try FileIO.makeDirectory(directory)
        if FileManager.default.fileExists(atPath: directory + "/decisions.log") {
            try FileIO.rename(directory + "/decisions.log", to: Self.path(directory, 1))
        }
        let generations = Self.generations(in: directory)
        var pending: [UInt64: [String]] = [:]
        var ended = DecisionMemory(capacity: 1 << 20)
        func apply(_ payload: [UInt8], _ offset: Int) throws {
            switch try DecisionRecord.decode(payload) {
            case .commit(let seq, let participants): pending[seq] = participants
            case .end(let seq):
                if pending.removeValue(forKey: seq) != nil { ended.record(seq, .committed) }
            }
        }
        for old in generations.dropLast() {
            let path = Self.path(directory, old)
            let bytes = try FileIO.readAll(path)
            let valid = try LogFile.scanLog(bytes, path: path, onRecord: apply)
            guard valid == bytes.count else {
                throw StorageError.corrupt(path: path, offset: valid, detail: "a sealed decision log ends in a damaged record")
            }
        }
        generation = generations.last ?? 1
        let file = try LogFile(path: Self.path(directory, generation), onRecord: apply)
        if file.discardedTailBytes > 0 {
            logger.warning("discarded a torn record at the end of \(file.path) (\(file.discardedTailBytes) bytes)")
        }
        for old in generations.dropLast() { try? FileManager.default.removeItem(atPath: Self.path(directory, old)) }
        self.pending = pending
        self.ended = ended
        logged = pending
        log = GroupCommitLog(file: file, logger: logger)
    }

    /// Makes the commit decision for `seq` durable; `durable` runs once it is fsynced, and only then may `com`
    /// be sent. The write and fsync happen on `loop` once the current tick's work is done, so every decision
    /// taken in one tick shares one fsync and no other thread is involved; `durable` runs on `loop` too.
    func recordCommit(seq: UInt64, participants: [String], flushingOn loop: EventLoop,
                      durable: @escaping () -> Void) {
        lock.lock()
        logged[seq] = participants
        log.append([DecisionRecord.commit(seq: seq, participants: participants).encoded()], sync: .caller) { [self] in
            lock.lock()
            pending[seq] = participants
            lock.unlock()
            durable()
        }
        compactIfLarge()
        let schedule = !flushScheduled
        flushScheduled = true
        lock.unlock()
        if schedule {
            loop.execute { [self] in
                lock.lock()
                flushScheduled = false
                lock.unlock()
                log.flush()
            }
        }
    }

    /// Notes that every participant acknowledged `seq`. The END record is not forced: it goes out with the next
    /// flush, and losing it in a crash only means re-sending an idempotent `com` after the restart.
    func recordEnd(seq: UInt64) {
        lock.lock()
        if pending.removeValue(forKey: seq) != nil { ended.record(seq, .committed) }
        if logged.removeValue(forKey: seq) != nil { log.append([DecisionRecord.end(seq: seq).encoded()], sync: .lazy) }
        lock.unlock()
    }

    /// Whether `seq` is known to have committed: durable and unacknowledged, or acknowledged recently.
    func wasCommitted(seq: UInt64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return pending[seq] != nil || ended[seq] == .committed
    }

    /// The participants of `seq` if it committed and is not yet fully acknowledged.
    func committedParticipants(seq: UInt64) -> [String]? {
        lock.lock()
        defer { lock.unlock() }
        return pending[seq]
    }

    /// Every commit still waiting for acknowledgements, oldest first.
    func pendingCommits() -> [(seq: UInt64, participants: [String])] {
        lock.lock()
        defer { lock.unlock() }
        return pending.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    var syncCount: UInt64 { log.counters.syncs }

    func close() { log.close() }

    /// Must be called with `lock` held.
    private func compactIfLarge() {
        guard !compacting, log.sizeBytes >= compactBytes else { return }
        compacting = true
        let old = generation
        generation += 1
        let carried = logged.sorted { $0.key < $1.key }
        log.rotate(to: Self.path(directory, generation)) {}
        log.append(carried.map { DecisionRecord.commit(seq: $0.key, participants: $0.value).encoded() }) { [self] in
            try? FileManager.default.removeItem(atPath: Self.path(directory, old))
            try? FileIO.fsyncDirectory(directory)
            logger.info("decision log compacted: generation \(generation) carries \(carried.count) unacknowledged commits")
            lock.lock()
            compacting = false
            lock.unlock()
        }
    }

    private static func path(_ directory: String, _ generation: UInt64) -> String {
        directory + "/decisions-\(generation).log"
    }

    private static func generations(in directory: String) -> [UInt64] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in
            guard name.hasPrefix("decisions-"), name.hasSuffix(".log") else { return nil }
            return UInt64(name.dropFirst(10).dropLast(4))
        }.sorted()
    }
}
