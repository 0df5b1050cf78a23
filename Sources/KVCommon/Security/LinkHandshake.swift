import Crypto

// LinkHandshake: mutual challenge-response at the start of every cluster link, before any wire command.
//
//   client -> server   E;hello;ROLE:ID;NONCE_C                      (E: the master's seq epoch, or empty)
//   server -> client   {"status":true,"code":"ok","server":S,"nonce":NONCE_S,"proof":P_S,...}
//   client -> server   E;auth;ROLE:ID;P_C
//   server -> client   {"status":true,"code":"ok","message":"authenticated as ROLE ID",...}
//
// P_S = HMAC(K_ROLE, "server" · ROLE · ID · S · E · NONCE_C · NONCE_S) and P_C the same with "client", each field
// length-prefixed, where K_ROLE is the role's key derived from the cluster key (`ClusterKey`). The server proves
// itself first, over the client's fresh nonce, so the client sends nothing but its hello to a server that does not
// hold the key; the client proves itself over the server's fresh nonce, so a recorded handshake cannot be replayed.
// Everything after the last line is the user's wire format, unchanged.
//
// Invariants:
// - A server executes nothing a connection sent before its `auth` line was verified; a failed handshake gets one
//   error line (code `unauthorized`) and the connection is closed.
// - A role is accepted only by a server that admits it (`allowedRoles`), and only with that role's key.

/// The fields both proofs cover, in order.
struct HandshakeTranscript {
    var role: LinkRole
    var clientID: String
    var serverID: String
    var epoch: UInt64
    var clientNonce: [UInt8]
    var serverNonce: [UInt8]

    func proof(_ direction: String, key: ClusterKey.RoleKey) -> [UInt8] {
        var message: [UInt8] = Array("kv link v1".utf8)
        func field(_ bytes: [UInt8]) {
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { message.append(contentsOf: $0) }
            message.append(contentsOf: bytes)
        }
        field(Array(direction.utf8))
        field(Array(role.rawValue.utf8))
        field(Array(clientID.utf8))
        field(Array(serverID.utf8))
        withUnsafeBytes(of: epoch.bigEndian) { message.append(contentsOf: $0) }
        field(clientNonce)
        field(serverNonce)
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: key.key))
    }

    static func matches(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        // Constant time in the proof's bytes: how far a guess matched must not show in the reply's timing.
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}

/// The identity a handshake proved.
public struct LinkPeer: Equatable, Sendable {
    public var role: LinkRole
    public var id: String
    /// The seq epoch the master stated (0 for other roles).
    public var epoch: UInt64
}

public enum LinkHandshake {
    /// Nonces are this many random bytes.
    public static let nonceBytes = 16

    /// `ROLE:ID` of a hello or auth line.
    static func identity(_ key: [UInt8]) -> (LinkRole, String)? {
        guard let colon = key.firstIndex(of: UInt8(ascii: ":")),
              let role = LinkRole(rawValue: String(decoding: key[..<colon], as: UTF8.self)) else { return nil }
        let id = String(decoding: key[(colon + 1)...], as: UTF8.self)
        guard !id.isEmpty, id.utf8.count <= 255 else { return nil }
        return (role, id)
    }

    static func replyLine(status: Bool, code: String, message: String, server: String,
                          extra: [(String, String)] = []) -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        writer.field("status", status)
        writer.field("message", message)
        writer.field("seq", nil as UInt64?)
        writer.field("server", server)
        writer.field("code", code)
        for (name, value) in extra { writer.field(name, value) }
        var line = writer.finish()
        line.append(UInt8(ascii: "\n"))
        return line
    }
}
