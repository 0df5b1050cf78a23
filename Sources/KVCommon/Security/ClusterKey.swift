import Crypto
import Foundation

/// Who is at the other end of an authenticated cluster link, as its handshake proved.
public enum LinkRole: String, CaseIterable, Sendable {
    /// The master: runs two-phase commit and state transfers.
    case master
    /// A replica asking a peer or the master for a transaction's outcome (`qry`).
    case replica
    /// An operator's tool: reads and status only.
    case `operator`
}

/// The secret every process of a cluster shares, and the per-role keys derived from it.
///
/// A handshake proves a role with that role's key: `HMAC-SHA256(cluster key, "kv role key v1 " + role)`. The
/// master and the replicas hold the cluster key and can derive every role's key, so they can check any peer;
/// an operator is given only the operator key (`kv-replicad keygen --operator`), which cannot be turned into the
/// master's: holding it allows `get`, `stat` and `list`, never a prepare or a reset.
public struct ClusterKey: Sendable {
    /// The key a role proves itself with.
    public struct RoleKey: Sendable, Equatable {
        public let role: LinkRole
        let key: SymmetricKey

        public static func == (lhs: RoleKey, rhs: RoleKey) -> Bool {
            lhs.role == rhs.role && lhs.bytes == rhs.bytes
        }

        var bytes: [UInt8] { key.withUnsafeBytes { Array($0) } }

        /// The key as the operator key file holds it: 64 lowercase hex digits.
        public var hex: String { HexCoding.encode(bytes) }
    }

    /// At least this many bytes of secret (256 bits, the HMAC's own strength).
    public static let minimumBytes = 32

    private let secret: SymmetricKey

    public init(bytes: [UInt8]) throws {
        guard bytes.count >= Self.minimumBytes else {
            throw KVError.keyInvalid("a cluster key needs at least \(Self.minimumBytes) bytes (\(2 * Self.minimumBytes) "
                + "hex digits), this one has \(bytes.count)")
        }
        secret = SymmetricKey(data: bytes)
    }

    /// A key file's text: hex digits, surrounding whitespace ignored (the file `keygen` writes).
    public init(fileText: String) throws {
        guard let bytes = HexCoding.decode(fileText.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw KVError.keyInvalid("a key file holds hex digits only (64 or more)")
        }
        try self.init(bytes: bytes)
    }

    public func key(for role: LinkRole) -> RoleKey {
        let derived = HMAC<SHA256>.authenticationCode(for: Array("kv role key v1 \(role.rawValue)".utf8), using: secret)
        return RoleKey(role: role, key: SymmetricKey(data: Array(derived)))
    }

    /// An operator key file's text read back (the key of `role`, as `RoleKey.hex` wrote it).
    public static func roleKey(_ role: LinkRole, fileText: String) throws -> RoleKey {
        guard let bytes = HexCoding.decode(fileText.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == 32 else {
            throw KVError.keyInvalid("a role key file holds exactly 64 hex digits")
        }
        return RoleKey(role: role, key: SymmetricKey(data: bytes))
    }
}

/// Lowercase hex, for keys, nonces and proofs on the wire and in key files.
enum HexCoding {
    static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty, utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = PercentCoding.hexValue(utf8[index]), let low = PercentCoding.hexValue(utf8[index + 1])
            else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

}
