import Foundation
import KVCommon
import Synchronization

/// The master's `LeaseTable`, shared by the event loop (which feeds it every published change), the FastCGI
/// workers (grant, attach, keepalive, revoke) and the `LeaseKeeper` thread (load and expiry), with the
/// monotonic clock its deadlines count in.
final class LeaseBook: Sendable {
    private let table: Mutex<LeaseTable>
    /// Loaded with at least one key attached: only then can a change of a client's key matter, so the event
    /// loop skips the lock for every other write (set under the lock, read by the event loop alone).
    private let watchesKeys = Atomic<Bool>(false)

    init(limits: ClusterConfig.Limits) {
        table = Mutex(LeaseTable(opsMax: limits.txnOpsMax, bytesMax: limits.txnBytesMax))
    }

    /// Milliseconds of a clock that only goes forward (wall-clock steps must not expire or extend a lease).
    static var nowMs: Int64 { Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000) }

    /// One published index's changes (on the event loop, before the transaction's `com` goes out).
    func published(_ changes: [ChangeHistory.Change]) {
        guard watchesKeys.load(ordering: .relaxed) || changes.contains(where: { LeaseKeys.isReserved($0.key) })
        else { return }
        let now = Self.nowMs
        table.withLock { table in
            table.apply(changes, nowMs: now)
            watchesKeys.store(table.loaded && table.hasAttachments, ordering: .relaxed)
        }
    }

    func withTable<T>(_ body: (inout LeaseTable) -> T) -> T {
        table.withLock { table in
            let result = body(&table)
            watchesKeys.store(table.loaded && table.hasAttachments, ordering: .relaxed)
            return result
        }
    }
}
