/// Order-independent digest of a key space: the wrapping sum of a 64-bit hash of each (key, value, version).
/// Replicas maintain it incrementally, so comparing two replicas costs one `stat` each.
public enum ContentDigest {
    public static func entryHash(key: [UInt8], value: [UInt8], version: UInt64) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        for byte in key { mix(byte) }
        mix(0xFF)
        withUnsafeBytes(of: UInt64(key.count).littleEndian) { $0.forEach(mix) }
        for byte in value { mix(byte) }
        withUnsafeBytes(of: version.littleEndian) { $0.forEach(mix) }
        // splitmix64 finaliser spreads FNV's weak high bits before the sum.
        hash = (hash ^ (hash >> 30)) &* 0xBF58_476D_1CE4_E5B9
        hash = (hash ^ (hash >> 27)) &* 0x94D0_49BB_1331_11EB
        return hash ^ (hash >> 31)
    }
}
