import Foundation
import KVRuntime

/// Hands out transaction seqs that are unique across master restarts: `epoch * 1e9 + counter`.
///
/// The epoch is read from `<dir>/epoch`, incremented and written back durably (temp file, fsync, rename,
/// fsync directory) before the first seq of this run is issued. A run that exhausts its counter moves to the
/// next epoch the same way. Seqs only grow, so a key's version (the seq that last wrote it) only grows too.
final class SeqAllocator: @unchecked Sendable {
    static let perEpoch: UInt64 = 1_000_000_000

    private let path: String
    private let lock = NSLock()
    private(set) var epoch: UInt64
    private var counter: UInt64 = 0

    init(directory: String) throws {
        path = directory + "/epoch"
        var previous: UInt64 = 0
        if FileManager.default.fileExists(atPath: path) {
            let text = String(decoding: try FileIO.readAll(path), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard let value = UInt64(text) else {
                throw MasterError.decisionLog("\(path) does not hold an epoch number ('\(text)'); restore it from a backup")
            }
            previous = value
        }
        epoch = previous + 1
        try FileIO.writeAtomically(Array("\(epoch)\n".utf8), to: path)
    }

    func next() -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        counter += 1
        if counter == Self.perEpoch {
            epoch += 1
            counter = 1
            do {
                try FileIO.writeAtomically(Array("\(epoch)\n".utf8), to: path)
            } catch {
                FileHandle.standardError.write(Data("cannot persist epoch \(epoch): \(error); stopping\n".utf8))
                exit(74)
            }
        }
        return epoch * Self.perEpoch + counter
    }
}
