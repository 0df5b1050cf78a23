import Foundation
import KVCommon
import KVRuntime
import Logging
import NIOCore

/// The decision log's files, `<decision_log_dir>/decisions-<generation>.log`: reads every generation at start
/// and executes the `DecisionJournal`'s file actions (the rules of what to write, when to compact and what to
/// delete are the journal's, not this file's).
///
/// Forced appends (COMMIT records) queued while the event loop handles replica replies are written and
/// fsynced by one task at the end of that tick, on the loop; `onDurable` then runs there. Lazy ones (END) ride
/// with the next flush.
final class DecisionLogFiles {
    private let log: GroupCommitLog
    private let directory: String
    private let loop: EventLoop
    private let logger: Logger
    /// A flush of queued forced records is already scheduled on the loop (loop state).
    private var flushScheduled = false
    /// Every generation found at start, oldest first, with its records.
    let recovered: [DecisionJournal.Generation]
    /// Runs on the loop once a forced append is durable (set once, before the first append).
    var onDurable: (DecisionLogToken) -> Void = { _ in }

    init(directory: String, loop: EventLoop, logger: Logger) throws {
        self.directory = directory
        self.loop = loop
        self.logger = logger
        do {
            (recovered, log) = try Self.read(directory, logger: logger)
        } catch StorageError.corrupt(let path, let offset, let detail) {
            throw MasterError.decisionLog("\(path) is corrupt at byte offset \(offset): \(detail); refusing to start. "
                + "Restore decision_log_dir from a backup taken with the master stopped; without one, move the whole "
                + "directory aside (never only the damaged file: master-state would then presume its commits "
                + "aborted) and start the master: it starts over above every seq the replicas hold, and replicas "
                + "settle their in-doubt transactions among themselves where one of them knows the outcome "
                + "(docs/OPERATIONS.md, \"The master's directory\")")
        }
    }

    private static func read(_ directory: String, logger: Logger) throws
        -> ([DecisionJournal.Generation], GroupCommitLog) {
        try FileIO.makeDirectory(directory)
        if FileManager.default.fileExists(atPath: directory + "/decisions.log") {
            try FileIO.rename(directory + "/decisions.log", to: path(directory, 1))
        }
        let generations = generations(in: directory)
        var recovered: [DecisionJournal.Generation] = []
        for old in generations.dropLast() {
            let path = path(directory, old)
            let bytes = try FileIO.readAll(path)
            var records: [DecisionRecord] = []
            let valid = try LogFile.scanLog(bytes, path: path) { payload, _ in records.append(try DecisionRecord.decode(payload)) }
            guard valid == bytes.count else {
                throw StorageError.corrupt(path: path, offset: valid, detail: "a sealed decision log ends in a damaged record")
            }
            recovered.append(DecisionJournal.Generation(number: old, records: records))
        }
        let newest = generations.last ?? 1
        var records: [DecisionRecord] = []
        let file = try LogFile(path: path(directory, newest)) { payload, _ in
            records.append(try DecisionRecord.decode(payload))
        }
        if file.discardedTailBytes > 0 {
            logger.warning("discarded a torn record at the end of \(file.path) (\(file.discardedTailBytes) bytes)")
        }
        recovered.append(DecisionJournal.Generation(number: newest, records: records))
        return (recovered, GroupCommitLog(file: file, logger: logger))
    }

    /// Executes one file action; `onDurable` runs (on the loop) once a forced append is durable.
    func execute(_ action: DecisionJournal.FileAction) {
        switch action {
        case .append(let records, let forced):
            let payloads = records.map { $0.encoded() }
            guard let token = forced else {
                log.append(payloads, sync: .lazy)
                return
            }
            log.append(payloads, sync: .caller) { [self] in
                if loop.inEventLoop { onDurable(token) } else { loop.execute { [self] in onDurable(token) } }
            }
            scheduleFlush()
        case .rotate(let generation):
            log.rotate(to: Self.path(directory, generation)) {}
        case .delete(let generation):
            try? FileManager.default.removeItem(atPath: Self.path(directory, generation))
            try? FileIO.fsyncDirectory(directory)
            logger.info("decision log compacted: generation \(generation) removed")
        }
    }

    /// Every forced record queued in this tick shares one write and one fsync, made at its end on the loop.
    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.execute { [self] in
            flushScheduled = false
            log.flush()
        }
    }

    var syncCount: UInt64 { log.counters.syncs }

    func close() { log.close() }

    static func path(_ directory: String, _ generation: UInt64) -> String {
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
