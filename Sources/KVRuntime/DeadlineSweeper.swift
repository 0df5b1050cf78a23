import NIOCore
import NIOPosix

/// Something with a deadline that a `DeadlineSweeper` watches.
public protocol DeadlineTarget: AnyObject {
    /// Read on the sweeper's event loop.
    var deadline: NIODeadline { get }
    /// Called on the event loop once `deadline` has passed (once per `watch`).
    func deadlinePassed()
}

/// The time-outs of every transaction on one event loop (the master's `TransactionDriver`s), kept with one
/// scheduled task instead of one per transaction and phase: NIO's `scheduleTask` and `cancel` cost about 30
/// allocations per write, a fifth of the master's, for timers that almost never fire.
///
/// The task is set for the earliest deadline it knows of. When it runs it times out what has expired and sets
/// itself for the next earliest; transactions that finished in the meantime were simply forgotten. Deadlines
/// mostly come in increasing order (the same time-out, started later), so watching one rarely moves the task.
/// Confined to its event loop; one per loop thread, created on first use (`current(on:)`).
public final class DeadlineSweeper {
    private let loop: EventLoop
    private var watched: [ObjectIdentifier: DeadlineTarget] = [:]
    private var scheduled: (at: NIODeadline, task: Scheduled<Void>)?

    private init(loop: EventLoop) { self.loop = loop }

    private static let perLoop = ThreadSpecificVariable<DeadlineSweeper>()

    /// The sweeper of `loop`; must be called on it.
    public static func current(on loop: EventLoop) -> DeadlineSweeper {
        loop.preconditionInEventLoop()
        if let sweeper = perLoop.currentValue, sweeper.loop === loop { return sweeper }
        let sweeper = DeadlineSweeper(loop: loop)
        perLoop.currentValue = sweeper
        return sweeper
    }

    /// Starts watching `target` (again, after its deadline moved).
    public func watch(_ target: DeadlineTarget) {
        watched[ObjectIdentifier(target)] = target
        let deadline = target.deadline
        if let scheduled, scheduled.at <= deadline { return }
        schedule(at: deadline)
    }

    public func forget(_ target: DeadlineTarget) {
        watched.removeValue(forKey: ObjectIdentifier(target))
    }

    public var watchedCount: Int { watched.count }

    private func schedule(at deadline: NIODeadline) {
        scheduled?.task.cancel()
        let task = loop.scheduleTask(deadline: deadline) { [self] in sweep(reached: deadline) }
        scheduled = (deadline, task)
    }

    /// Times out what expired by `reached`, the deadline the task was set for (not the clock: a task that runs
    /// late leaves what expired meanwhile to the next run, which is then due at once).
    private func sweep(reached now: NIODeadline) {
        scheduled = nil
        var expired: [DeadlineTarget] = []
        var next: NIODeadline?
        for target in watched.values {
            let deadline = target.deadline
            if deadline <= now {
                expired.append(target)
            } else if next.map({ deadline < $0 }) ?? true {
                next = deadline
            }
        }
        for target in expired { watched.removeValue(forKey: ObjectIdentifier(target)) }
        if let next { schedule(at: next) }
        for target in expired { target.deadlinePassed() }
    }
}
