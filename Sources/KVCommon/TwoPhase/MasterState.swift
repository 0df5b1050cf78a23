/// What the master keeps durably beside its decision log, in one checksummed file replaced atomically
/// (`<decision_log_dir>/master-state`): the seq epoch, the configuration epoch and the in-sync membership.
///
/// Layout: the magic `KVMST01\n`, then one frame `[length u32][CRC-32C u32][payload]` whose payload is
/// `seqEpoch:u64 configEpoch:u64 membershipEpoch:u64 presumeAbortFrom:u64 hasMembers:u8 count:u32` and per
/// member `id:blob host:blob port:u32 dataDir:blob joinedAt:u64`.
public struct MasterState: Equatable, Sendable {
    /// A replica the master counts as in sync: it holds every write committed since `joinedAt`.
    public struct Member: Equatable, Sendable {
        public var replica: ClusterConfig.Replica
        /// The seq the replica joined at (its last state transfer ended there); 0 for a replica taken into a
        /// membership that was not persisted before (an upgrade).
        public var joinedAt: UInt64
        public init(replica: ClusterConfig.Replica, joinedAt: UInt64) {
            self.replica = replica
            self.joinedAt = joinedAt
        }
    }

    public static let magic: [UInt8] = Array("KVMST01\n".utf8)

    /// seq = seqEpoch × 10^9 + counter; the epoch of the master's current run.
    public var seqEpoch: UInt64
    /// Every configuration the master accepted (at start or reload) got the next number.
    public var configEpoch: UInt64
    /// Every change of the in-sync set got the next number.
    public var membershipEpoch: UInt64
    /// Seqs below this were issued before this decision log knew everything (a lost or rewound directory):
    /// for them a missing COMMIT does not prove an abort.
    public var presumeAbortFrom: UInt64
    /// The in-sync replicas; nil when no membership was ever persisted (a directory from an earlier version).
    public var members: [Member]?

    public init(seqEpoch: UInt64 = 0, configEpoch: UInt64 = 0, membershipEpoch: UInt64 = 0, presumeAbortFrom: UInt64 = 0,
                members: [Member]? = nil) {
        self.seqEpoch = seqEpoch
        self.configEpoch = configEpoch
        self.membershipEpoch = membershipEpoch
        self.presumeAbortFrom = presumeAbortFrom
        self.members = members
    }

    public func encoded() -> [UInt8] {
        var payload = BinaryWriter()
        payload.u64(seqEpoch)
        payload.u64(configEpoch)
        payload.u64(membershipEpoch)
        payload.u64(presumeAbortFrom)
        payload.u8(members == nil ? 0 : 1)
        payload.u32(UInt32(members?.count ?? 0))
        for member in members ?? [] {
            payload.blob(Array(member.replica.id.utf8))
            payload.blob(Array(member.replica.host.utf8))
            payload.u32(UInt32(member.replica.port))
            payload.blob(Array(member.replica.dataDir.utf8))
            payload.u64(member.joinedAt)
        }
        var file = BinaryWriter(appendingTo: Self.magic)
        file.u32(UInt32(payload.count))
        file.u32(CRC32C.checksum(payload.bytes))
        file.raw(payload.bytes)
        return file.bytes
    }

    /// Decodes a state file; throws `KVError.recordMalformed` naming what is wrong.
    public static func decode(_ bytes: [UInt8]) throws -> MasterState {
        guard bytes.count >= magic.count + 8, Array(bytes[0..<magic.count]) == magic else {
            throw KVError.recordMalformed("master state: not a KVMST01 file")
        }
        var header = BinaryReader(Array(bytes[magic.count..<(magic.count + 8)]))
        let length = Int(try header.u32())
        let checksum = try header.u32()
        let payload = Array(bytes[(magic.count + 8)...])
        guard payload.count == length, CRC32C.checksum(payload) == checksum else {
            throw KVError.recordMalformed("master state: checksum mismatch or truncated file")
        }
        var reader = BinaryReader(payload)
        var state = MasterState(seqEpoch: try reader.u64(), configEpoch: try reader.u64(),
                                membershipEpoch: try reader.u64(), presumeAbortFrom: try reader.u64())
        let hasMembers = try reader.u8() == 1
        let count = try reader.u32()
        guard count <= 4096 else { throw KVError.recordMalformed("master state: \(count) members") }
        var members: [Member] = []
        for _ in 0..<count {
            let id = String(decoding: try reader.blob(limit: 1024), as: UTF8.self)
            let host = String(decoding: try reader.blob(limit: 1024), as: UTF8.self)
            let port = Int(try reader.u32())
            let dataDir = String(decoding: try reader.blob(limit: 1 << 16), as: UTF8.self)
            let replica = ClusterConfig.Replica(id: id, host: host, port: port, dataDir: dataDir)
            members.append(Member(replica: replica, joinedAt: try reader.u64()))
        }
        guard reader.isAtEnd else { throw KVError.recordMalformed("master state: trailing bytes") }
        if hasMembers { state.members = members }
        return state
    }
}
