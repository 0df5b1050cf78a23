/// The client side of `LinkHandshake`, as a value-type state machine. Send `hello`, feed the server's reply
/// lines to `receive` and send what it returns, until it reports the link authenticated.
public struct HandshakeInitiator {
    public enum Step: Equatable {
        /// Send this line (the `auth`); the link is usable for requests right after it.
        case send([UInt8])
        /// The server confirmed: the handshake is over.
        case authenticated
    }

    private enum State { case awaitingChallenge, awaitingConfirmation, done }

    public let role: LinkRole
    public let id: String
    private let key: ClusterKey.RoleKey
    private let epoch: UInt64
    private let nonce: [UInt8]
    /// The server id the client means to reach (nil: any server of the cluster).
    private let expectedServer: String?
    private var state = State.awaitingChallenge
    /// The server's id, once its proof checked out.
    public private(set) var server: String?

    public init(key: ClusterKey.RoleKey, id: String, epoch: UInt64 = 0, nonce: [UInt8], expectedServer: String? = nil) {
        precondition(nonce.count == LinkHandshake.nonceBytes, "a handshake nonce has \(LinkHandshake.nonceBytes) bytes")
        role = key.role
        self.id = id
        self.key = key
        self.epoch = epoch
        self.nonce = nonce
        self.expectedServer = expectedServer
    }

    /// The first line to send.
    public var hello: [UInt8] {
        WireRequest(seq: epoch == 0 ? nil : epoch, command: .hello, key: Array("\(role.rawValue):\(id)".utf8),
                    value: Array(HexCoding.encode(nonce).utf8)).encoded()
    }

    /// Handles one reply line of the server; a failure means: close the link, trust nothing it said.
    public mutating func receive(_ line: [UInt8]) -> Result<Step, KVError> {
        guard case .success(let value) = JSONValue.parse(line), value["status"] != nil else {
            return fail("the server's answer is not a wire reply")
        }
        let server = value["server"]?.stringValue ?? "?"
        guard value["status"]?.boolValue == true else {
            return fail("\(server) refused: \(value["message"]?.stringValue ?? "no reason given")")
        }
        switch state {
        case .awaitingChallenge:
            if let expectedServer, server != expectedServer {
                return fail("reached \(server) where \(expectedServer) was expected (is cluster.yaml's address right?)")
            }
            guard let serverNonce = value["nonce"]?.stringValue.flatMap(HexCoding.decode),
                  serverNonce.count == LinkHandshake.nonceBytes,
                  let proof = value["proof"]?.stringValue.flatMap(HexCoding.decode) else {
                return fail("\(server) sent no challenge (does it run a version without authentication?)")
            }
            let transcript = HandshakeTranscript(role: role, clientID: id, serverID: server, epoch: epoch,
                                                 clientNonce: nonce, serverNonce: serverNonce)
            guard HandshakeTranscript.matches(proof, transcript.proof("server", key: key)) else {
                return fail("\(server) does not hold this cluster's key")
            }
            self.server = server
            state = .awaitingConfirmation
            let answer = transcript.proof("client", key: key)
            return .success(.send(WireRequest(seq: epoch == 0 ? nil : epoch, command: .auth,
                                              key: Array("\(role.rawValue):\(id)".utf8),
                                              value: Array(HexCoding.encode(answer).utf8)).encoded()))
        case .awaitingConfirmation:
            state = .done
            return .success(.authenticated)
        case .done:
            return fail("handshake already over")
        }
    }

    private mutating func fail(_ reason: String) -> Result<Step, KVError> {
        state = .done
        return .failure(.authFailed(reason))
    }
}
