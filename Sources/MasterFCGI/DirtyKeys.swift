import Foundation

/// While a replica is being synced, the keys committed since its transfer began: they are copied again
/// from the source before the replica joins, which covers every write the snapshot may have missed.
final class DirtyKeys: @unchecked Sendable {
    private let lock = NSLock()
    private var trackers: [String: Set<[UInt8]>] = [:]

    func startTracking(_ replica: String) {
        lock.lock()
        trackers[replica] = []
        lock.unlock()
    }

    func stopTracking(_ replica: String) {
        lock.lock()
        trackers[replica] = nil
        lock.unlock()
    }

    /// Records a committed key for every replica being synced. Cheap when none is.
    func record(_ key: [UInt8]) {
        lock.lock()
        if !trackers.isEmpty {
            for replica in trackers.keys { trackers[replica]?.insert(key) }
        }
        lock.unlock()
    }

    /// Returns and clears the keys recorded for `replica`.
    func take(_ replica: String) -> Set<[UInt8]> {
        lock.lock()
        defer { lock.unlock() }
        let keys = trackers[replica] ?? []
        if trackers[replica] != nil { trackers[replica] = [] }
        return keys
    }
}
