import Foundation

/// A thread for long background work (snapshots) that must not take CPU from the request path.
///
/// It runs at a raised nice value: on Linux the nice value is per thread (setpriority(2) with a thread id), so
/// when both cores are busy the scheduler gives the event loops about 10 times its share, and when they are
/// idle it still runs at full speed. A thread can raise its own nice value without privileges but never lower it
/// again, which is why each job gets a fresh thread instead of a pooled one.
public enum BackgroundThread {
    public static let niceIncrement: Int32 = 10

    public static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread {
            Thread.current.name = name
            lowerOwnPriority()
            body()
        }
        thread.start()
    }

    /// Best effort: if the thread id cannot be found or setpriority fails, the work runs at normal priority.
    static func lowerOwnPriority() {
        guard let tid = currentThreadID() else { return }
        let current = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid, current + niceIncrement)
    }

    /// The kernel's id of the calling thread, from the `/proc/thread-self` link (`<pid>/task/<tid>`); Glibc's
    /// `gettid` is not visible to Swift.
    static func currentThreadID() -> id_t? {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self"),
              let last = target.split(separator: "/").last else { return nil }
        return id_t(last)
    }
}
