/// The server side of `LinkHandshake`, as a value-type state machine: lines in, a line to send and a verdict out.
/// The executor supplies the random nonce; until `peer` is set it must not execute anything the connection sent.
public struct HandshakeResponder {
    public enum Step: Equatable {
        /// Send the line and wait for the next one.
        case reply([UInt8])
        /// The peer proved its identity: send the line, then serve the connection as `LinkPeer`.
        case accepted(LinkPeer, [UInt8])
        /// Send the error line, then close the connection.
        case rejected([UInt8], reason: String)
    }

    private enum State {
        case awaitingHello
        case awaitingAuth(HandshakeTranscript)
        case done
    }

    public let serverID: String
    private let clusterKey: ClusterKey
    private let allowedRoles: Set<LinkRole>
    private var state = State.awaitingHello
    public private(set) var peer: LinkPeer?

    public init(serverID: String, clusterKey: ClusterKey, allowedRoles: Set<LinkRole>) {
        self.serverID = serverID
        self.clusterKey = clusterKey
        self.allowedRoles = allowedRoles
    }

    /// Handles one line the client sent; `nonce` is fresh randomness (`LinkHandshake.nonceBytes` bytes).
    public mutating func receive(_ line: [UInt8], nonce: [UInt8]) -> Step {
        precondition(nonce.count == LinkHandshake.nonceBytes, "a handshake nonce has \(LinkHandshake.nonceBytes) bytes")
        switch state {
        case .done:
            return reject("handshake already over")
        case .awaitingHello:
            guard case .success(let request) = WireRequest.parse(line), request.command == .hello else {
                return reject("this port needs an authenticated link: start with 'EPOCH;hello;ROLE:ID;NONCE' "
                    + "(see docs/OPERATIONS.md, Security; operators use scripts/kv-wire)")
            }
            guard let (role, id) = LinkHandshake.identity(request.key) else {
                return reject("hello names no known role and id ('master:m1', 'replica:r2', 'operator:NAME')")
            }
            guard allowedRoles.contains(role) else { return reject("role \(role.rawValue) may not use this port") }
            guard let clientNonce = HexCoding.decode(String(decoding: request.value, as: UTF8.self)),
                  clientNonce.count == LinkHandshake.nonceBytes else {
                return reject("hello needs a nonce of \(2 * LinkHandshake.nonceBytes) hex digits")
            }
            let transcript = HandshakeTranscript(role: role, clientID: id, serverID: serverID, epoch: request.seq ?? 0,
                                                 clientNonce: clientNonce, serverNonce: nonce)
            state = .awaitingAuth(transcript)
            let proof = transcript.proof("server", key: clusterKey.key(for: role))
            return .reply(LinkHandshake.replyLine(status: true, code: ReplyCode.ok.rawValue, message: "prove the key",
                                                  server: serverID,
                                                  extra: [("nonce", HexCoding.encode(nonce)),
                                                          ("proof", HexCoding.encode(proof))]))
        case .awaitingAuth(let transcript):
            guard case .success(let request) = WireRequest.parse(line), request.command == .auth,
                  let (role, id) = LinkHandshake.identity(request.key), role == transcript.role,
                  id == transcript.clientID, (request.seq ?? 0) == transcript.epoch else {
                return reject("expected 'EPOCH;auth;ROLE:ID;PROOF' repeating the hello's epoch, role and id")
            }
            let expected = transcript.proof("client", key: clusterKey.key(for: role))
            guard let proof = HexCoding.decode(String(decoding: request.value, as: UTF8.self)),
                  HandshakeTranscript.matches(proof, expected) else {
                return reject("wrong proof: the client does not hold the \(role.rawValue) key of this cluster")
            }
            let peer = LinkPeer(role: role, id: id, epoch: transcript.epoch)
            self.peer = peer
            state = .done
            return .accepted(peer, LinkHandshake.replyLine(status: true, code: ReplyCode.ok.rawValue,
                                                           message: "authenticated as \(role.rawValue) \(id)",
                                                           server: serverID))
        }
    }

    /// The connection did not finish its handshake within `ms`: the error line to send before it is closed.
    public mutating func timedOut(afterMs ms: Int) -> (line: [UInt8], reason: String) {
        let reason = "no handshake within \(ms) ms"
        guard case .rejected(let line, _) = reject(reason) else { preconditionFailure("reject always rejects") }
        return (line, reason)
    }

    private mutating func reject(_ reason: String) -> Step {
        state = .done
        return .rejected(LinkHandshake.replyLine(status: false, code: ReplyCode.unauthorized.rawValue,
                                                 message: "authentication failed: \(reason)", server: serverID),
                         reason: reason)
    }
}
