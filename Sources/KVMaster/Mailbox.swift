import Foundation

/// A blocking queue of events for one worker thread: NIO callbacks post, the worker takes with a deadline.
final class Mailbox<Event>: @unchecked Sendable {
    private let condition = NSCondition()
    private var events: [Event] = []
    private var head = 0

    func post(_ event: Event) {
        condition.lock()
        events.append(event)
        condition.signal()
        condition.unlock()
    }

    /// The next event, or nil once `deadline` has passed with nothing posted.
    func take(before deadline: Date) -> Event? {
        condition.lock()
        defer { condition.unlock() }
        while head == events.count {
            if !condition.wait(until: deadline) && head == events.count { return nil }
        }
        let event = events[head]
        head += 1
        if head == events.count {
            events.removeAll(keepingCapacity: true)
            head = 0
        }
        return event
    }
}
