import Foundation

/// Lets writes run concurrently, and lets a membership change (a replica joining after its state transfer,
/// a divergence check) hold new writes back for a moment while the running ones finish.
final class WriteGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var active = 0
    private var paused = false

    /// Enters a write; false if a pause lasted longer than `timeoutMs` (the caller answers 503).
    func enter(timeoutMs: Int) -> Bool {
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMs) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while paused {
            if !condition.wait(until: deadline) && paused { return false }
        }
        active += 1
        return true
    }

    func leave() {
        condition.lock()
        active -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Holds new writes back and waits up to `timeoutMs` for running ones to finish, then runs `body` and lets
    /// writes go on. Returns nil (without running `body`) if the running writes did not finish in time.
    func whilePaused<T>(timeoutMs: Int, _ body: () -> T) -> T? {
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMs) / 1000)
        condition.lock()
        while paused { condition.wait() }
        paused = true
        while active > 0 {
            if !condition.wait(until: deadline) && active > 0 {
                paused = false
                condition.broadcast()
                condition.unlock()
                return nil
            }
        }
        condition.unlock()
        let result = body()
        condition.lock()
        paused = false
        condition.broadcast()
        condition.unlock()
        return result
    }
}
