import NIOCore

/// Timers keyed by a value (the master's `TransactionManager.Timer`), kept with one scheduled task instead of
/// one per timer: arming and cancelling a NIO task allocates, and every write arms phase time-outs that almost
/// never fire (docs/PERFORMANCE.md has the measurements).
///
/// The task is set for the earliest deadline it knows of. When it runs it fires what has expired and sets itself
/// for the next earliest; timers forgotten in the meantime are simply gone. Deadlines mostly come in increasing
/// order (the same time-out, started later), so starting one rarely moves the task. Confined to its event loop.
///
/// Inlinable so that the master's use is specialized for its key: unspecialized, every start and cancel went
/// through the generic dictionary with runtime metadata lookups, on the event loop that every write crosses.
public final class DeadlineSweeper<Key: Hashable> {
    @usableFromInline let loop: EventLoop
    @usableFromInline let fire: (Key) -> Void
    @usableFromInline var deadlines: [Key: NIODeadline] = [:]
    @usableFromInline var scheduled: (at: NIODeadline, task: Scheduled<Void>)?

    /// `fire` runs on `loop` once per `start` whose deadline passed (unless `cancel`led or restarted first).
    @inlinable
    public init(loop: EventLoop, fire: @escaping (Key) -> Void) {
        self.loop = loop
        self.fire = fire
    }

    /// Starts (or restarts, replacing its deadline) the timer `key`.
    @inlinable
    public func start(_ key: Key, at deadline: NIODeadline) {
        loop.preconditionInEventLoop()
        deadlines[key] = deadline
        if let scheduled, scheduled.at <= deadline { return }
        schedule(at: deadline)
    }

    @inlinable
    public func start(_ key: Key, afterMs ms: Int) { start(key, at: .now() + .milliseconds(Int64(ms))) }

    @inlinable
    public func cancel(_ key: Key) {
        deadlines.removeValue(forKey: key)
    }

    @inlinable
    public var count: Int { deadlines.count }

    @inlinable
    func schedule(at deadline: NIODeadline) {
        scheduled?.task.cancel()
        let task = loop.scheduleTask(deadline: deadline) { [self] in sweep(reached: deadline) }
        scheduled = (deadline, task)
    }

    /// Fires what expired by `reached`, the deadline the task was set for (not the clock: a task that runs late
    /// leaves what expired meanwhile to the next run, which is then due at once).
    @inlinable
    func sweep(reached now: NIODeadline) {
        scheduled = nil
        var expired: [Key] = []
        var next: NIODeadline?
        for (key, deadline) in deadlines {
            if deadline <= now {
                expired.append(key)
            } else if next.map({ deadline < $0 }) ?? true {
                next = deadline
            }
        }
        for key in expired { deadlines.removeValue(forKey: key) }
        if let next { schedule(at: next) }
        for key in expired { fire(key) }
    }
}
