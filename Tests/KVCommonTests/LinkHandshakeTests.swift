import XCTest
@testable import KVCommon

final class LinkHandshakeTests: XCTestCase {
    private let cluster = try! ClusterKey(bytes: Array(repeating: 0x5A, count: 32))
    private let other = try! ClusterKey(bytes: Array(repeating: 0xA5, count: 32))
    private func nonce(_ byte: UInt8) -> [UInt8] { Array(repeating: byte, count: LinkHandshake.nonceBytes) }

    private func responder(_ roles: Set<LinkRole> = Set(LinkRole.allCases)) -> HandshakeResponder {
        HandshakeResponder(serverID: "r2", clusterKey: cluster, allowedRoles: roles)
    }

    private func line(_ text: String) -> [UInt8] { Array(text.utf8) + [UInt8(ascii: "\n")] }

    /// Runs a whole handshake; returns the responder's last step and the initiator's verdict on it.
    private func run(_ initiator: inout HandshakeInitiator, _ server: inout HandshakeResponder)
        -> (HandshakeResponder.Step, Result<HandshakeInitiator.Step, KVError>?) {
        let challenge = server.receive(initiator.hello, nonce: nonce(2))
        guard case .reply(let challengeLine) = challenge else { return (challenge, nil) }
        guard case .success(.send(let auth)) = initiator.receive(challengeLine) else {
            return (challenge, initiator.receive(challengeLine))
        }
        let verdict = server.receive(auth, nonce: nonce(3))
        switch verdict {
        case .accepted(_, let confirmation), .rejected(let confirmation, _), .reply(let confirmation):
            return (verdict, initiator.receive(confirmation))
        }
    }

    func testMasterAndReplicaAuthenticateEachOther() {
        var client = HandshakeInitiator(key: cluster.key(for: .master), id: "m1", epoch: 7, nonce: nonce(1),
                                        expectedServer: "r2")
        var server = responder()
        let (step, verdict) = run(&client, &server)
        guard case .accepted(let peer, _) = step else { return XCTFail("not accepted: \(step)") }
        XCTAssertEqual(peer, LinkPeer(role: .master, id: "m1", epoch: 7))
        XCTAssertEqual(server.peer, peer)
        XCTAssertEqual(try verdict?.get(), .authenticated)
        XCTAssertEqual(client.server, "r2")
    }

    func testAWrongKeyIsRefusedByTheServer() {
        var client = HandshakeInitiator(key: other.key(for: .master), id: "m1", nonce: nonce(1))
        var server = responder()
        // The client sees first that the server's proof does not match its key, and stops.
        let challenge = server.receive(client.hello, nonce: nonce(2))
        guard case .reply(let challengeLine) = challenge else { return XCTFail("\(challenge)") }
        guard case .failure(let error) = client.receive(challengeLine) else { return XCTFail("client trusted the server") }
        XCTAssertTrue(error.description.contains("does not hold this cluster's key"), error.description)
        // A client that goes on anyway (an attacker guessing) is refused by the server.
        let forged = line(";auth;master:m1;" + String(repeating: "00", count: 32))
        guard case .rejected(let reply, let reason) = server.receive(forged, nonce: nonce(3)) else {
            return XCTFail("a forged proof was accepted")
        }
        XCTAssertTrue(reason.contains("wrong proof"), reason)
        XCTAssertTrue(String(decoding: reply, as: UTF8.self).contains(#""code":"unauthorized""#))
        XCTAssertNil(server.peer)
    }

    func testAnImpostorServerIsRefusedByTheClient() {
        var client = HandshakeInitiator(key: cluster.key(for: .master), id: "m1", nonce: nonce(1))
        var impostor = HandshakeResponder(serverID: "r2", clusterKey: other, allowedRoles: [.master])
        guard case .reply(let challenge) = impostor.receive(client.hello, nonce: nonce(2)) else { return XCTFail() }
        guard case .failure = client.receive(challenge) else { return XCTFail("the client trusted an impostor") }
    }

    func testTheExpectedServerIsChecked() {
        var client = HandshakeInitiator(key: cluster.key(for: .master), id: "m1", nonce: nonce(1), expectedServer: "r3")
        var server = responder()
        guard case .reply(let challenge) = server.receive(client.hello, nonce: nonce(2)) else { return XCTFail() }
        guard case .failure(let error) = client.receive(challenge) else { return XCTFail("reached the wrong replica") }
        XCTAssertTrue(error.description.contains("reached r2 where r3 was expected"), error.description)
    }

    func testAReplayedHandshakeFails() {
        // Record a good handshake, then replay the client's lines to a new connection (a new server nonce).
        var client = HandshakeInitiator(key: cluster.key(for: .master), id: "m1", nonce: nonce(1))
        var first = responder()
        guard case .reply(let challenge) = first.receive(client.hello, nonce: nonce(2)),
              case .success(.send(let auth)) = client.receive(challenge),
              case .accepted = first.receive(auth, nonce: nonce(3)) else { return XCTFail("the recorded one failed") }
        var second = responder()
        guard case .reply = second.receive(client.hello, nonce: nonce(9)) else { return XCTFail() }
        guard case .rejected(_, let reason) = second.receive(auth, nonce: nonce(3)) else {
            return XCTFail("a replayed auth line was accepted")
        }
        XCTAssertTrue(reason.contains("wrong proof"), reason)
    }

    func testTheOperatorKeyCannotClaimTheMaster() {
        let operatorKey = cluster.key(for: .operator)
        // An operator who claims to be the master and proves with the key it holds: the role picks the key the
        // server checks against, so the proof fails.
        let claimed = ClusterKey.RoleKey(role: .master, key: operatorKey.key)
        var claimant = HandshakeInitiator(key: claimed, id: "m1", nonce: nonce(1))
        var server = responder()
        guard case .reply(let challenge) = server.receive(claimant.hello, nonce: nonce(2)) else { return XCTFail() }
        // (The claimant cannot check the server's proof, which is over the master key; it answers anyway.)
        XCTAssertNotNil(try? JSONValue.parse(challenge).get())
        let transcript = HandshakeTranscript(role: .master, clientID: "m1", serverID: "r2", epoch: 0,
                                             clientNonce: nonce(1), serverNonce: nonce(2))
        let forged = line(";auth;master:m1;" + HexCoding.encode(transcript.proof("client", key: claimed)))
        guard case .rejected(_, let reason) = server.receive(forged, nonce: nonce(3)) else {
            return XCTFail("the operator key passed as the master's")
        }
        XCTAssertTrue(reason.contains("does not hold the master key"), reason)
        XCTAssertNil(server.peer)
        _ = claimant.receive(challenge)
        // As itself, the operator is let in, as operator.
        var tool = HandshakeInitiator(key: operatorKey, id: "alice", nonce: nonce(1))
        var port = responder()
        guard case (.accepted(let peer, _), let verdict) = run(&tool, &port) else { return XCTFail("operator refused") }
        XCTAssertEqual(peer.role, .operator)
        XCTAssertEqual(try verdict?.get(), .authenticated)
    }

    func testARoleThePortDoesNotAdmitIsRefused() {
        let client = HandshakeInitiator(key: cluster.key(for: .operator), id: "alice", nonce: nonce(1))
        var server = responder([.master, .replica])
        guard case .rejected(_, let reason) = server.receive(client.hello, nonce: nonce(2)) else { return XCTFail() }
        XCTAssertTrue(reason.contains("role operator may not use this port"), reason)
    }

    func testAnyOtherFirstLineIsRefusedWithOneErrorLine() {
        for text in [";get;k", "5;put;k;intruder", ";reset;;", "garbage", ";hello;master:m1;zz", ";hello;king:m1;"
                     + String(repeating: "00", count: 16), ";auth;master:m1;00"] {
            var server = responder()
            guard case .rejected(let reply, _) = server.receive(line(text), nonce: nonce(2)) else {
                return XCTFail("'\(text)' was not refused")
            }
            XCTAssertTrue(String(decoding: reply, as: UTF8.self).hasSuffix("}\n"))
            // Nothing after a refusal is taken, not even a valid handshake.
            let client = HandshakeInitiator(key: cluster.key(for: .master), id: "m1", nonce: nonce(1))
            guard case .rejected = server.receive(client.hello, nonce: nonce(2)) else { return XCTFail() }
        }
    }

    func testTheAuthMustRepeatTheHello() {
        var client = HandshakeInitiator(key: cluster.key(for: .master), id: "m1", epoch: 4, nonce: nonce(1))
        var server = responder()
        guard case .reply(let challenge) = server.receive(client.hello, nonce: nonce(2)),
              case .success(.send(let auth)) = client.receive(challenge) else { return XCTFail() }
        // The same proof under another epoch (a stale master's claim) or id does not pass.
        let text = String(decoding: auth, as: UTF8.self)
        for forged in [text.replacingOccurrences(of: "4;auth", with: "5;auth"),
                       text.replacingOccurrences(of: "master:m1", with: "master:m2")] {
            var fresh = responder()
            guard case .reply = fresh.receive(client.hello, nonce: nonce(2)) else { return XCTFail() }
            guard case .rejected = fresh.receive(Array(forged.utf8), nonce: nonce(3)) else {
                return XCTFail("accepted \(forged)")
            }
        }
    }

    func testKeyFiles() throws {
        let hex = String(repeating: "ab", count: 32)
        XCTAssertNoThrow(try ClusterKey(fileText: "  \(hex)\n"))
        XCTAssertThrowsError(try ClusterKey(fileText: String(repeating: "ab", count: 16)))  // 128 bits: too short
        XCTAssertThrowsError(try ClusterKey(fileText: hex + "zz"))
        XCTAssertThrowsError(try ClusterKey(fileText: ""))
        let operatorKey = cluster.key(for: .operator)
        XCTAssertEqual(try ClusterKey.roleKey(.operator, fileText: operatorKey.hex + "\n"), operatorKey)
        XCTAssertNotEqual(cluster.key(for: .operator), cluster.key(for: .master))
        XCTAssertNotEqual(cluster.key(for: .master), other.key(for: .master))
    }
}

final class LinkPermissionTests: XCTestCase {
    func testEachRoleMaySendOnlyWhatItNeeds() {
        for command in WireCommand.allCases where command != .hello && command != .auth {
            XCTAssertTrue(LinkRole.master.may(command), "master: \(command)")
        }
        XCTAssertEqual(LinkRole.replica.allowedCommands, [.stat, .qry])
        XCTAssertEqual(LinkRole.operator.allowedCommands, [.get, .stat, .list])
        for role in LinkRole.allCases {
            XCTAssertFalse(role.may(.hello))
            XCTAssertFalse(role.may(.auth))
        }
        // The attacks of the security issue: none is open to a tool or a peer.
        for command in [WireCommand.put, .del, .com, .abrt, .txn, .reset, .join, .load, .drop, .memb, .snap, .page] {
            XCTAssertFalse(LinkRole.operator.may(command), "operator: \(command)")
            XCTAssertFalse(LinkRole.replica.may(command), "replica: \(command)")
        }
    }
}
