import Foundation

/// The process's open-file limit, raised at start to fit the connections the configuration admits: systemd (and
/// most shells) start a service with a soft limit of 1024, below `limits.replica_connections_max`'s default, so
/// without this the limit in cluster.yaml could never be reached; accept() would fail first, and connections
/// past it would wait in the kernel's backlog instead of being refused.
public enum FileLimit {
    /// Raises the soft limit to `needed` descriptors (at most the hard limit). Returns nil when it fits, else a
    /// warning for the log saying what to change.
    public static func raise(toFit needed: Int, what: String) -> String? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            return "cannot read the open-file limit (\(String(cString: strerror(errno))))"
        }
        let wanted = rlim_t(needed)
        if limit.rlim_cur >= wanted { return nil }
        let hard = limit.rlim_max
        limit.rlim_cur = min(wanted, hard)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            return "cannot raise the open-file limit to \(limit.rlim_cur) (\(String(cString: strerror(errno))))"
        }
        guard hard >= wanted else {
            return "the open-file limit is \(hard), below the \(needed) that \(what) needs: raise it (LimitNOFILE= in "
                + "the unit, ulimit -n) or lower the limit in cluster.yaml"
        }
        return nil
    }

    /// The soft limit now (for tests and start-up logs).
    public static var current: Int {
        var limit = rlimit()
        return getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(limit.rlim_cur) : -1
    }
}
