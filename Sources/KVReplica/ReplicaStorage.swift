import Foundation
import KVCommon
import KVRuntime
import Logging

/// A replica's files in its data_dir: log segments `wal-<generation>.log` and snapshots
/// `snapshot-<generation>.snap`, where snapshot G holds the state produced by every segment before G.
///
/// Start-up loads the newest snapshot (it must be complete: header, records, trailer whose counts and digest
/// match) and replays the segments from its generation on. Only the newest segment may end in a torn record.
/// A snapshot is written to a temp file, fsynced, renamed and its directory fsynced; only then are the
/// segments and snapshots it replaces deleted.
enum ReplicaStorage {
    struct Opened {
        var file: LogFile
        var generation: UInt64
        var report: String
    }

    static func segmentPath(_ directory: String, _ generation: UInt64) -> String {
        directory + "/wal-" + padded(generation) + ".log"
    }

    static func snapshotPath(_ directory: String, _ generation: UInt64) -> String {
        directory + "/snapshot-" + padded(generation) + ".snap"
    }

    /// Rebuilds `participant` from `directory` and opens the newest segment for appending.
    static func open(directory: String, into participant: inout Participant, logger: Logger) throws -> Opened {
        try FileIO.makeDirectory(directory)
        let started = ReplicaNode.nowMs()
        var files = try listing(directory)
        if files.segments.isEmpty, FileManager.default.fileExists(atPath: directory + "/replica.log") {
            // The single-file layout of earlier versions is generation 1.
            try FileIO.rename(directory + "/replica.log", to: segmentPath(directory, 1))
            files = try listing(directory)
        }
        var restoredKeys = 0
        let snapshotGeneration = files.snapshots.last ?? 0
        if snapshotGeneration > 0 {
            let path = snapshotPath(directory, snapshotGeneration)
            restoredKeys = try loadSnapshot(path, into: &participant, nowMs: started)
        }
        let loadedMs = ReplicaNode.nowMs() - started
        let live = files.segments.filter { $0 >= snapshotGeneration }
        var records = 0
        for generation in live.dropLast() {
            let path = segmentPath(directory, generation)
            let bytes = try FileIO.readAll(path)
            let valid = try LogFile.scanLog(bytes, path: path) { payload, _ in
                participant.replay(try ReplicaRecord.decode(payload), nowMs: started)
                records += 1
            }
            guard valid == bytes.count else {
                throw StorageError.corrupt(path: path, offset: valid, detail: "a sealed log segment ends in a damaged record")
            }
        }
        let generation = live.last ?? max(snapshotGeneration, 1)
        let file = try LogFile(path: segmentPath(directory, generation)) { payload, _ in
            participant.replay(try ReplicaRecord.decode(payload), nowMs: started)
            records += 1
        }
        if file.discardedTailBytes > 0 {
            logger.warning("discarded a torn record at the end of \(file.path) (\(file.discardedTailBytes) bytes): a crash interrupted an append that was never acknowledged")
        }
        participant.finishReplay()
        try removeObsolete(directory, before: snapshotGeneration)
        let totalMs = max(1, ReplicaNode.nowMs() - started)
        let rate = restoredKeys > 0 ? " (\(restoredKeys * 1000 / Int(max(1, loadedMs))) keys/s)" : ""
        let report = "restored \(restoredKeys) keys from snapshot \(snapshotGeneration) in \(loadedMs) ms\(rate), "
            + "replayed \(records) log records from \(live.count) segment(s); ready in \(totalMs) ms"
        return Opened(file: file, generation: generation, report: report)
    }

    /// Writes `state` as snapshot `generation`, then removes the files it makes obsolete.
    static func writeSnapshot(_ state: Participant, generation: UInt64, directory: String) throws -> Int {
        let path = snapshotPath(directory, generation)
        let temp = path + ".tmp"
        let fd = try FileIO.open(temp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        var count = 0
        do {
            // Written and made durable 1 MiB at a time: a single fsync of the whole file at the end would hold
            // back every log fdatasync made meanwhile (ext4 commits the journal for both), a write stall of
            // hundreds of milliseconds on large snapshots.
            var writer = BinaryWriter(appendingTo: LogFile.snapshotMagic)
            let chunkBytes = 1 << 20
            try state.writeSnapshot(generation: generation) { record in
                LogFile.appendFrame(to: &writer) { record.encode(into: &$0) }
                count += 1
                if writer.count >= chunkBytes {
                    try FileIO.writeAll(fd, writer.bytes, path: temp)
                    try FileIO.fdatasync(fd, path: temp)
                    writer.removeAll()
                }
            }
            try FileIO.writeAll(fd, writer.bytes, path: temp)
            Failpoints.hit("replica-mid-snapshot")
            try FileIO.fsync(fd, path: temp)
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        try FileIO.rename(temp, to: path)
        try FileIO.fsyncDirectory(directory)
        try removeObsolete(directory, before: generation)
        return count
    }

    private static func loadSnapshot(_ path: String, into participant: inout Participant, nowMs: UInt64) throws -> Int {
        let bytes = try FileIO.readAll(path)
        var sawTrailer = false
        var keys = 0
        let valid = try LogFile.scanFrames(bytes, path: path, magic: LogFile.snapshotMagic) { payload, offset in
            guard !sawTrailer else {
                throw StorageError.corrupt(path: path, offset: offset, detail: "records after the snapshot trailer")
            }
            let record = try SnapshotRecord.decode(payload)
            switch record {
            case .trailer, .trailerWithoutCreated: sawTrailer = true
            default: break
            }
            if case .entry = record { keys += 1 }
            try participant.restore(record, nowMs: nowMs)
        }
        guard valid == bytes.count, sawTrailer else {
            throw StorageError.corrupt(path: path, offset: valid, detail: "incomplete snapshot (no valid trailer)")
        }
        return keys
    }

    private static func listing(_ directory: String) throws -> (segments: [UInt64], snapshots: [UInt64]) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var segments: [UInt64] = []
        var snapshots: [UInt64] = []
        for name in names {
            if name.hasSuffix(".tmp") {
                try? FileManager.default.removeItem(atPath: directory + "/" + name)
            } else if name.hasPrefix("wal-"), name.hasSuffix(".log"), let generation = UInt64(name.dropFirst(4).dropLast(4)) {
                segments.append(generation)
            } else if name.hasPrefix("snapshot-"), name.hasSuffix(".snap"),
                      let generation = UInt64(name.dropFirst(9).dropLast(5)) {
                snapshots.append(generation)
            }
        }
        return (segments.sorted(), snapshots.sorted())
    }

    private static func removeObsolete(_ directory: String, before generation: UInt64) throws {
        guard generation > 0 else { return }
        let files = try listing(directory)
        var removed = false
        for old in files.segments where old < generation {
            try? FileManager.default.removeItem(atPath: segmentPath(directory, old))
            removed = true
        }
        for old in files.snapshots where old < generation {
            try? FileManager.default.removeItem(atPath: snapshotPath(directory, old))
            removed = true
        }
        if removed { try FileIO.fsyncDirectory(directory) }
    }

    private static func padded(_ generation: UInt64) -> String {
        let text = String(generation)
        return String(repeating: "0", count: max(0, 16 - text.count)) + text
    }
}
