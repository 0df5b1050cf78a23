import Foundation
import KVCommon
import KVRuntime
import Logging

/// The master's durable record of commit decisions (presumed abort: aborts are never logged).
///
/// `recordCommit` returns only once the COMMIT record is fsynced; only then may `com` be sent. `recordEnd`
/// is appended without waiting: losing it only means re-sending an idempotent `com` after a restart.
/// In memory it keeps the commits that have no END yet, which is all in-doubt resolution needs.
final class DecisionLog: @unchecked Sendable {
    private let log: GroupCommitLog
    private let lock = NSLock()
    private var pending: [UInt64: [String]] = [:]

    init(directory: String, logger: Logger) throws {
        try FileIO.makeDirectory(directory)
        var pending: [UInt64: [String]] = [:]
        let file = try LogFile(path: directory + "/decisions.log") { payload, _ in
            switch try DecisionRecord.decode(payload) {
            case .commit(let seq, let participants): pending[seq] = participants
            case .end(let seq): pending[seq] = nil
            }
        }
        if file.discardedTailBytes > 0 {
            logger.warning("discarded a torn record at the end of \(file.path) (\(file.discardedTailBytes) bytes)")
        }
        self.pending = pending
        log = GroupCommitLog(file: file, logger: logger)
    }

    /// Makes the commit decision for `seq` durable. Blocks until fsynced.
    func recordCommit(seq: UInt64, participants: [String]) {
        log.appendAndWait([DecisionRecord.commit(seq: seq, participants: participants).encoded()])
        lock.lock()
        pending[seq] = participants
        lock.unlock()
    }

    /// Notes that every participant acknowledged `seq`.
    func recordEnd(seq: UInt64) {
        lock.lock()
        let known = pending.removeValue(forKey: seq) != nil
        lock.unlock()
        if known { log.append([DecisionRecord.end(seq: seq).encoded()]) }
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
}
