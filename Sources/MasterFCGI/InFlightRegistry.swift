import Foundation
import KVCommon

/// The transactions this master is running right now, so in-doubt resolution can reach a live one.
/// Also enforces `limits.in_flight_transactions_max`.
final class InFlightRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var mailboxes: [UInt64: Mailbox<Coordinator.Event>] = [:]
    private let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Registers `seq`; false when the limit is reached (the caller answers 503).
    func register(_ seq: UInt64, _ mailbox: Mailbox<Coordinator.Event>) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard mailboxes.count < limit else { return false }
        mailboxes[seq] = mailbox
        return true
    }

    func remove(_ seq: UInt64) {
        lock.lock()
        mailboxes[seq] = nil
        lock.unlock()
    }

    /// Posts `event` to the running transaction `seq`; false if it is not running.
    func post(_ seq: UInt64, _ event: Coordinator.Event) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let mailbox = mailboxes[seq] else { return false }
        mailbox.post(event)
        return true
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return mailboxes.count
    }
}
