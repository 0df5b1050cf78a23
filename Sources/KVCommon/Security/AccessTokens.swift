import Crypto
import Foundation

// AccessTokens: who may do what over HTTP (`Authorization: Bearer <token>`), on the model of Consul's ACL tokens
// and etcd's role-based access: each token has one role.
//
// - read-only: read keys (`GET /kv/{key}`, `get` of `POST /kv`, listing, a transaction's compares and gets)
//   under its prefixes (every key when it lists none), and `GET /status`.
// - read-write: read and write keys under its prefixes (at least one), and `GET /status`.
// - admin: everything, including `/admin/*` and `GET /status?verify=1` (both pause writes).
//
// Tokens are stored as their SHA-256: a token is 256 random bits, so the digest reveals nothing, and the file
// (or a backup of it) gives no one a token. A request without a known token is answered 401; one outside the
// token's role, 403. `/ping` is open: load balancers check it.

/// One token's role, as the tokens file spells it.
public enum TokenRole: String, Sendable, CaseIterable {
    case readOnly = "read-only"
    case readWrite = "read-write"
    case admin
}

/// A token of the tokens file: its name (for logs and messages), the SHA-256 of its secret, its role and prefixes.
public struct AccessToken: Equatable, Sendable {
    public var name: String
    public var digest: [UInt8]
    public var role: TokenRole
    /// Key prefixes it may use; empty means every key (read-only and admin only).
    public var prefixes: [[UInt8]]

    public init(name: String, digest: [UInt8], role: TokenRole, prefixes: [[UInt8]]) {
        self.name = name
        self.digest = digest
        self.role = role
        self.prefixes = prefixes
    }

    /// What a request asks to do.
    public enum Action: Equatable, Sendable {
        case read(key: [UInt8])
        case write(key: [UInt8])
        /// Listing keys with this prefix (allowed when every key it can show is).
        case list(prefix: [UInt8])
        case status
        /// Granting, keeping alive or revoking a lease (a revoke also needs `write` of every key attached).
        case lease
        /// `/admin/*`, `/status?verify=1`.
        case admin
    }

    public func allows(_ action: Action) -> Bool {
        switch (role, action) {
        case (.admin, _): return true
        case (_, .admin): return false
        case (_, .status): return true
        case (.readOnly, .write), (.readOnly, .lease): return false
        case (.readWrite, .lease): return true
        case (_, .read(let key)), (.readWrite, .write(let key)): return covers(key)
        case (_, .list(let prefix)): return covers(prefix)
        }
    }

    private func covers(_ key: [UInt8]) -> Bool {
        prefixes.isEmpty || prefixes.contains { key.starts(with: $0) }
    }
}

/// The tokens in force, looked up by the digest of the presented secret.
public struct AccessTokens: Sendable {
    private let byDigest: [[UInt8]: AccessToken]
    public var count: Int { byDigest.count }

    public init(_ tokens: [AccessToken]) {
        byDigest = Dictionary(tokens.map { ($0.digest, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public static func digest(of secret: String) -> [UInt8] { Array(SHA256.hash(data: Array(secret.utf8))) }

    public enum Failure: Error, Equatable, Sendable {
        case missing
        case malformed
        case unknown
    }

    /// The token an `Authorization` header value names.
    /// Parsed on the header's bytes (it runs on every request): the scheme case-insensitively, spaces around the
    /// secret ignored, at most 512 bytes of secret.
    public func authenticate(_ header: String?) -> Result<AccessToken, Failure> {
        guard var text = header, !text.isEmpty else { return .failure(.missing) }
        return text.withUTF8 { bytes -> Result<AccessToken, Failure> in
            func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }
            var start = 0
            while start < bytes.count, isSpace(bytes[start]) { start += 1 }
            let scheme = Array("bearer".utf8)
            guard bytes.count - start > scheme.count, isSpace(bytes[start + scheme.count]) else { return .failure(.malformed) }
            for offset in 0..<scheme.count where bytes[start + offset] | 0x20 != scheme[offset] {
                return .failure(.malformed)
            }
            var from = start + scheme.count
            var end = bytes.count
            while from < end, isSpace(bytes[from]) { from += 1 }
            while end > from, isSpace(bytes[end - 1]) { end -= 1 }
            guard end > from, end - from <= 512 else { return .failure(.malformed) }
            let digest = Array(SHA256.hash(data: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[from..<end])))
            guard let token = byDigest[digest] else { return .failure(.unknown) }
            return .success(token)
        }
    }
}
