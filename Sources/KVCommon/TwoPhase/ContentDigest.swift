/// Order-independent digest of a key space: the wrapping sum of one 64-bit term per entry, covering its key, value,
/// version and created seq (`term`). Replicas maintain it incrementally, so comparing two replicas costs one `stat`
/// each. Snapshots written before `created` was covered carry the sum of `entryHash` alone (a type-5 trailer).
public enum ContentDigest {
    public static func entryHash(key: [UInt8], value: [UInt8], version: UInt64) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        let prime: UInt64 = 0x0000_0100_0000_01B3
        for byte in key { hash = (hash ^ UInt64(byte)) &* prime }
        hash = (hash ^ 0xFF) &* prime
        var length = UInt64(key.count)
        for _ in 0..<8 {
            hash = (hash ^ (length & 0xFF)) &* prime
            length >>= 8
        }
        for byte in value { hash = (hash ^ UInt64(byte)) &* prime }
        var versionBits = version
        for _ in 0..<8 {
            hash = (hash ^ (versionBits & 0xFF)) &* prime
            versionBits >>= 8
        }
        // splitmix64 finaliser spreads FNV's weak high bits before the sum.
        hash = (hash ^ (hash >> 30)) &* 0xBF58_476D_1CE4_E5B9
        hash = (hash ^ (hash >> 27)) &* 0x94D0_49BB_1331_11EB
        return hash ^ (hash >> 31)
    }

    /// An entry's term: its `entryHash` with the created seq mixed in. Computed from the cached hash, so taking
    /// an old entry's term out never hashes its value again.
    public static func term(entryHash: UInt64, created: UInt64) -> UInt64 {
        var mixed = entryHash ^ (created &* 0x9E37_79B9_7F4A_7C15)
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return entryHash &+ (mixed ^ (mixed >> 31))
    }
}
