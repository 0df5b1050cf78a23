/// What a replica reports for `;stat;;`: enough for the master to resolve in-doubt transactions and for
/// tests and operators to compare replicas.
public struct ReplicaStat: Equatable, Sendable {
    /// Number of committed keys.
    public var keys: Int
    /// Order-independent digest of every (key, value, version); equal on replicas with equal content.
    public var digest: UInt64
    /// Highest seq this replica has committed.
    public var lastCommittedSeq: UInt64
    /// Transactions prepared here whose outcome this replica does not know yet, with their age in ms.
    public var inDoubt: [InDoubt]
    /// fdatasync calls of the replica's log since it started (filled in by the replica process).
    public var logSyncs: UInt64 = 0
    /// Whether the replica holds the committed state and takes part (false while it is being synced).
    public var joined = true
    /// The seq it last joined at (`Participant.joinedSince`): with `joined`, which copy of the data this is.
    public var joinedSince: UInt64 = 0
    /// The highest seq this replica knows of (prepared, committed or aborted here, or its join point): a master
    /// issues only seqs above it.
    public var maxSeq: UInt64 = 0
    /// The master fence (`MasterFence`): the newest master's seq epoch and id accepted here (0 and "": none).
    public var fenceEpoch: UInt64 = 0
    public var fenceMaster = ""
    /// Reads waiting for a key's lock (each answers once the transaction holding it is decided).
    public var parkedReads = 0
    /// The data directory this process serves and the longest request line it takes now (filled in by the
    /// replica process; "" and 0 from older replicas): a master reload checks both against the new file.
    public var dataDir = ""
    public var requestBytesMax = 0

    public struct InDoubt: Equatable, Sendable {
        public var seq: UInt64
        public var ageMs: UInt64
        /// Prepared before this replica's last start (found in its log).
        public var recovered: Bool
        /// Neither the master nor any peer could tell the outcome at the last attempt.
        public var blocked: Bool
        /// The transaction's participants (recorded with its prepare; not sent on the wire).
        public var members: [Member]
        public init(seq: UInt64, ageMs: UInt64, recovered: Bool = false, blocked: Bool = false, members: [Member] = []) {
            self.seq = seq
            self.ageMs = ageMs
            self.recovered = recovered
            self.blocked = blocked
            self.members = members
        }
    }

    public init(keys: Int, digest: UInt64, lastCommittedSeq: UInt64, inDoubt: [InDoubt]) {
        self.keys = keys
        self.digest = digest
        self.lastCommittedSeq = lastCommittedSeq
        self.inDoubt = inDoubt
    }

    /// The in-doubt list as a JSON array: `[{"seq":N,"age_ms":N,"recovered":bool,"blocked":bool}]`.
    public func inDoubtJSON() -> [UInt8] {
        JSONWriter.array(inDoubt.map { item in
            var writer = JSONWriter(capacity: 80)
            writer.field("seq", item.seq)
            writer.field("age_ms", item.ageMs)
            writer.field("recovered", item.recovered)
            writer.field("blocked", item.blocked)
            return writer.finish()
        })
    }

    /// The digest as 16 lowercase hex digits, as it appears on the wire.
    public var digestHex: String {
        let hex = String(digest, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
