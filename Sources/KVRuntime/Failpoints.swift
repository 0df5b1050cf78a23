import Foundation

/// Named crash points for tests. `KV_FAILPOINTS="name"` in the environment makes `Failpoints.hit("name")`
/// exit the process abruptly (no cleanup, no flush) the first time execution reaches it; `name@N` waits for
/// the N-th time, so a test can let some traffic through first. Several points: `a,b@3`. Unset, `hit` is a
/// no-op costing one dictionary check.
///
/// Points: replica `replica-before-prepare-fsync`, `replica-after-prepare-fsync`, `replica-after-vote`,
/// `replica-after-commit`, `replica-mid-snapshot` (a snapshot's records written to its temp file, not yet
/// fsynced or renamed); master `master-after-votes`, `master-after-commit-fsync`, `master-mid-commit-send`.
///
/// Error points (`failing`) make an operation fail instead, from their N-th hit on: `log-fsync-eio` (a log's
/// fdatasync answers EIO, in both processes), to show that a failed fsync stops the process (exit 74).
public enum Failpoints {
    private static let armed: [String: Int] = {
        guard let text = ProcessInfo.processInfo.environment["KV_FAILPOINTS"], !text.isEmpty else { return [:] }
        var result: [String: Int] = [:]
        for item in text.split(separator: ",") {
            let parts = item.trimmingCharacters(in: .whitespaces).split(separator: "@", maxSplits: 1)
            result[String(parts[0])] = parts.count > 1 ? max(1, Int(parts[1]) ?? 1) : 1
        }
        return result
    }()
    private static let lock = NSLock()
    nonisolated(unsafe) private static var hits: [String: Int] = [:]

    /// Whether `name` is armed in this process.
    public static func isArmed(_ name: String) -> Bool { armed[name] != nil }

    /// Whether the operation at error point `name` must fail: armed, and hit N times or more.
    public static func failing(_ name: String) -> Bool {
        guard let target = armed[name] else { return false }
        lock.lock()
        let count = (hits[name] ?? 0) + 1
        hits[name] = count
        lock.unlock()
        return count >= target
    }

    /// Exits with status 99 if `name` is armed and this is its N-th hit.
    public static func hit(_ name: String) {
        guard let target = armed[name] else { return }
        lock.lock()
        let count = (hits[name] ?? 0) + 1
        hits[name] = count
        lock.unlock()
        guard count >= target else { return }
        FileHandle.standardError.write(Data("failpoint \(name) (hit \(count)): exiting now\n".utf8))
        _exit(99)
    }
}
