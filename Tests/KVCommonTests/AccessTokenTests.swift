@testable import KVCommon
import XCTest

/// The HTTP API's roles (`AccessToken.allows`) and the tokens file (`TokenFile`).
final class AccessTokenTests: XCTestCase {
    private func token(_ role: TokenRole, _ prefixes: [String] = []) -> AccessToken {
        AccessToken(name: "t", digest: AccessTokens.digest(of: "secret"), role: role, prefixes: prefixes.map { Array($0.utf8) })
    }

    private func key(_ text: String) -> [UInt8] { Array(text.utf8) }

    func testRolesAndPrefixes() {
        let reader = token(.readOnly), appReader = token(.readOnly, ["app/"]), writer = token(.readWrite, ["app/"])
        let admin = token(.admin)
        XCTAssertTrue(reader.allows(.read(key: key("anything"))))
        XCTAssertTrue(reader.allows(.list(prefix: [])))
        XCTAssertFalse(reader.allows(.write(key: key("app/a"))))
        XCTAssertTrue(appReader.allows(.read(key: key("app/a"))))
        XCTAssertFalse(appReader.allows(.read(key: key("apple"))))
        XCTAssertFalse(appReader.allows(.list(prefix: key("ap"))), "listing 'ap' would show keys outside app/")
        XCTAssertTrue(appReader.allows(.list(prefix: key("app/x"))))
        XCTAssertTrue(writer.allows(.write(key: key("app/a"))))
        XCTAssertFalse(writer.allows(.write(key: key("other"))))
        XCTAssertFalse(writer.allows(.read(key: key("other"))))
        for nonAdmin in [reader, appReader, writer] {
            XCTAssertTrue(nonAdmin.allows(.status))
            XCTAssertFalse(nonAdmin.allows(.admin))
        }
        XCTAssertTrue(admin.allows(.admin))
        XCTAssertTrue(admin.allows(.write(key: key("any"))))
    }

    func testAuthenticationNeedsABearerTokenThatIsKnown() {
        let tokens = AccessTokens([token(.readOnly)])
        XCTAssertEqual(tokens.authenticate(nil), .failure(.missing))
        XCTAssertEqual(tokens.authenticate("Basic c2VjcmV0"), .failure(.malformed))
        XCTAssertEqual(tokens.authenticate("Bearer"), .failure(.malformed))
        XCTAssertEqual(tokens.authenticate("Bearer other"), .failure(.unknown))
        XCTAssertEqual(try tokens.authenticate("Bearer secret").get().role, .readOnly)
        XCTAssertEqual(try tokens.authenticate("bearer  secret ").get().name, "t")
        XCTAssertEqual(try tokens.authenticate(" BEARER secret").get().name, "t")
        XCTAssertEqual(tokens.authenticate("Bearer "), .failure(.malformed))
        XCTAssertEqual(tokens.authenticate("Bearersecret"), .failure(.malformed))
        XCTAssertEqual(tokens.authenticate("Bearer " + String(repeating: "s", count: 513)), .failure(.malformed))
        XCTAssertEqual(tokens.authenticate("Bearer " + String(repeating: "s", count: 512)), .failure(.unknown))
    }

    func testTheTokensFileIsCheckedWithPositions() throws {
        let digest = String(repeating: "ab", count: 32)
        let good = "tokens:\n  - {name: ops, role: admin, sha256: \(digest)}\n"
            + "  - {name: app, role: read-write, prefixes: [app/], sha256: \(String(repeating: "cd", count: 32))}\n"
        XCTAssertEqual(try TokenFile.parse(good, fileName: "tokens.yaml").count, 2)
        let cases: [(String, String)] = [
            ("tokens:\n  - {name: x, role: root, sha256: \(digest)}\n", "tokens.yaml:2:"),
            ("tokens:\n  - {name: x, role: admin, sha256: abc}\n", "64 hex digits"),
            ("tokens:\n  - {name: x, role: read-write, sha256: \(digest)}\n", "needs prefixes"),
            ("tokens:\n  - {name: x, role: admin, prefixes: [a], sha256: \(digest)}\n", "prefixes do not apply"),
            ("tokens:\n  - {name: x, role: admin, sha256: \(digest)}\n  - {name: x, role: admin, sha256: \(digest)}\n",
             "already used"),
            ("tokens:\n  - {name: x, role: admin, secret: hunter2}\n", "unknown field 'secret'"),
        ]
        for (text, fragment) in cases {
            XCTAssertThrowsError(try TokenFile.parse(text, fileName: "tokens.yaml"), fragment) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error)")
            }
        }
    }
}
