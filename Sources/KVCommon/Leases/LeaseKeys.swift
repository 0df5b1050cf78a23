/// Where leases live in the replicated key space (issue 13, leases). A lease and each key's attachment are
/// ordinary keys under a reserved prefix, written through two-phase commit like any other, so they are as
/// durable as the data, copied by state transfer and carried by backups:
///
/// - `\xFFkv/lease/<id>` holds the lease's TTL in seconds (decimal). An attach rewrites it, so its version moves
///   and a removal that did not know of the new key fails its compare instead of leaving the key behind.
/// - `\xFFkv/kl/<key>` holds the id of the lease `<key>` was attached to, written in the same transaction as the
///   key, so both carry the same version. A later write of the key without the lease gives the key another
///   version: the marker is then stale, and the lease's removal deletes the marker but not the key.
///
/// Clients can neither read nor write the prefix; lists and watches skip it.
public enum LeaseKeys {
    public static let reserved: [UInt8] = [0xFF] + Array("kv/".utf8)
    public static let recordPrefix: [UInt8] = reserved + Array("lease/".utf8)
    public static let markerPrefix: [UInt8] = reserved + Array("kl/".utf8)
    /// Lease ids stay below 2^53 so that JavaScript clients read them exactly from JSON.
    public static let idMax: UInt64 = (1 << 53) - 1

    public enum Parsed: Equatable {
        /// A lease's record.
        case record(UInt64)
        /// The attachment of the key.
        case marker(key: [UInt8])
        /// Anything else under the reserved prefix (written by a newer version; left alone).
        case other
        /// A client's key.
        case client
    }

    public static func isReserved(_ key: [UInt8]) -> Bool {
        key.count >= reserved.count && key[0] == 0xFF && key.starts(with: reserved)
    }

    public static func record(_ id: UInt64) -> [UInt8] { recordPrefix + Array(String(id).utf8) }

    public static func marker(_ key: [UInt8]) -> [UInt8] { markerPrefix + key }

    public static func parse(_ key: [UInt8]) -> Parsed {
        guard isReserved(key) else { return .client }
        if key.starts(with: markerPrefix) { return .marker(key: Array(key.dropFirst(markerPrefix.count))) }
        if key.starts(with: recordPrefix), let id = number(key.dropFirst(recordPrefix.count)), id > 0 {
            return .record(id)
        }
        return .other
    }

    /// A decimal number without sign or leading zeros (the record's TTL, a marker's lease id).
    public static func number(_ bytes: some Collection<UInt8>) -> UInt64? {
        guard !bytes.isEmpty, bytes.count <= 19, bytes.first != UInt8(ascii: "0") || bytes.count == 1 else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
