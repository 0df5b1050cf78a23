import Foundation
import KVCommon
import KVRuntime

/// `<decision_log_dir>/master-state`: the `MasterState` (seq epoch, configuration epoch, membership), checksummed
/// and replaced atomically. The one place that reads or writes the master's epochs; the separate `epoch` and
/// `config-epoch` text files of earlier versions are read once and removed after the first write.
struct MasterStateFile {
    let path: String
    private let legacySeqEpoch: String
    private let legacyConfigEpoch: String

    init(directory: String) {
        path = directory + "/master-state"
        legacySeqEpoch = directory + "/epoch"
        legacyConfigEpoch = directory + "/config-epoch"
    }

    /// The state as found, nil for a new directory. A damaged file stops the start with a message saying so.
    func read() throws -> MasterState? {
        if FileManager.default.fileExists(atPath: path) {
            do {
                return try MasterState.decode(try FileIO.readAll(path))
            } catch let error as KVError {
                throw MasterError.decisionLog("\(path) is damaged (\(error)); restore it from a backup, or remove it "
                    + "to start a new seq epoch above every seq the replicas report (see docs/OPERATIONS.md)")
            }
        }
        let seqEpoch = try legacyNumber(legacySeqEpoch)
        let configEpoch = try legacyNumber(legacyConfigEpoch)
        guard seqEpoch != nil || configEpoch != nil else { return nil }
        return MasterState(seqEpoch: seqEpoch ?? 0, configEpoch: configEpoch ?? 0)
    }

    /// Replaces the file durably (temp file, fsync, rename, fsync directory); a failure stops the process.
    func write(_ state: MasterState) throws {
        try FileIO.writeAtomically(state.encoded(), to: path)
        for legacy in [legacySeqEpoch, legacyConfigEpoch] where FileManager.default.fileExists(atPath: legacy) {
            try FileManager.default.removeItem(atPath: legacy)
        }
    }

    private func legacyNumber(_ file: String) throws -> UInt64? {
        guard FileManager.default.fileExists(atPath: file) else { return nil }
        let text = String(decoding: try FileIO.readAll(file), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let value = UInt64(text) else {
            throw MasterError.decisionLog("\(file) does not hold an epoch number ('\(text)'); restore it from a backup")
        }
        return value
    }
}
