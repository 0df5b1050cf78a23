import Foundation
import KVCommon
import XCTest

final class WireReplyTests: XCTestCase {
    private func parse(_ text: String, valueExpected: Bool = false) -> Result<WireReply, KVError> {
        WireReply.parse(Array(text.utf8), valueExpected: valueExpected)
    }

    private func assertBadReply(_ text: String, containing fragment: String, valueExpected: Bool = false,
                                file: StaticString = #filePath, line: UInt = #line) {
        switch parse(text, valueExpected: valueExpected) {
        case .success(let reply):
            XCTFail("\(text) parsed as \(reply)", file: file, line: line)
        case .failure(.wireBadReply(let detail)):
            XCTAssertTrue(detail.contains(fragment), "\(detail.debugDescription) lacks \(fragment.debugDescription)",
                          file: file, line: line)
        case .failure(let other):
            XCTFail("expected wireBadReply, got \(other)", file: file, line: line)
        }
    }

    func testSimpleReplyRoundTrip() throws {
        let replies = [
            WireReply(status: true, code: .ok, message: "prepared", seq: 7, server: "r1"),
            WireReply(status: false, code: .conflict, message: "key is locked by transaction 3", seq: 8, server: "r2"),
            WireReply(status: false, code: .badRequest, message: "quote \" backslash \\ newline \n tab \t",
                      seq: nil, server: "r3"),
            WireReply(status: false, code: .unknownTransaction, message: "", seq: UInt64.max, server: "r-ü"),
        ]
        for reply in replies {
            let line = reply.encoded()
            XCTAssertEqual(line.last, 0x0A)
            XCTAssertEqual(line.filter { $0 == 0x0A }.count, 1, "a reply is exactly one line")
            XCTAssertEqual(try WireReply.parse(line, valueExpected: false).get(), reply)
        }
    }

    func testEncodedLayout() {
        let reply = WireReply(status: true, code: .ok, message: "committed", seq: 12, server: "r1")
        XCTAssertEqual(String(decoding: reply.encoded(), as: UTF8.self),
                       #"{"status":true,"message":"committed","seq":12,"server":"r1","code":"ok"}"# + "\n")
        let noSeq = WireReply(status: false, code: .notFound, message: "key not found", seq: nil, server: "r2")
        XCTAssertEqual(String(decoding: noSeq.encoded(), as: UTF8.self),
                       #"{"status":false,"message":"key not found","seq":null,"server":"r2","code":"not_found"}"#
                       + "\n")
    }

    func testUTF8ValueTravelsAsText() throws {
        let value = Array("héllo \"wörld\"\n😀".utf8)
        let reply = WireReply(status: true, code: .ok, message: "", seq: 4, server: "r1", value: value)
        let line = reply.encoded()
        XCTAssertFalse(String(decoding: line, as: UTF8.self).contains("encoding"))
        let parsed = try WireReply.parse(line, valueExpected: true).get()
        XCTAssertEqual(parsed.value, value)
        XCTAssertEqual(parsed.message, String(decoding: value, as: UTF8.self))
        XCTAssertEqual(parsed.seq, 4)
    }

    func testNonUTF8ValueTravelsAsBase64() throws {
        let value: [UInt8] = [0xFF, 0xFE, 0x00, 0x80, 0x41, 0xC3]
        let reply = WireReply(status: true, code: .ok, message: "", seq: 9, server: "r3", value: value)
        let text = String(decoding: reply.encoded(), as: UTF8.self)
        XCTAssertTrue(text.contains(#""encoding":"base64""#), text)
        XCTAssertTrue(text.contains(#""message":"\#(Data(value).base64EncodedString())""#), text)
        let parsed = try WireReply.parse(Array(text.utf8), valueExpected: true).get()
        XCTAssertEqual(parsed.value, value)
        XCTAssertEqual(parsed.seq, 9)
        XCTAssertEqual(parsed.server, "r3")
        XCTAssertTrue(parsed.status)
    }

    func testEmptyValueRoundTrip() throws {
        let reply = WireReply(status: true, code: .ok, message: "", seq: 2, server: "r1", value: [])
        XCTAssertEqual(try WireReply.parse(reply.encoded(), valueExpected: true).get().value, [])
    }

    func testValueOnlyReadWhenExpectedAndSuccessful() throws {
        let line = #"{"status":true,"message":"abc","seq":1,"server":"r1","code":"ok"}"#
        XCTAssertNil(try parse(line, valueExpected: false).get().value)
        XCTAssertEqual(try parse(line, valueExpected: true).get().value, Array("abc".utf8))
        let missing = #"{"status":false,"message":"key not found","seq":null,"server":"r1","code":"not_found"}"#
        let reply = try parse(missing, valueExpected: true).get()
        XCTAssertNil(reply.value)
        XCTAssertNil(reply.seq)
        XCTAssertEqual(reply.code, .notFound)
    }

    func testStatReplyRoundTrip() throws {
        let stat = ReplicaStat(keys: 3, digest: 0x00AB_CDEF_0123_4567, lastCommittedSeq: 41,
                               inDoubt: [.init(seq: 42, ageMs: 1500, recovered: true), .init(seq: 45, ageMs: 0, blocked: true)])
        XCTAssertEqual(stat.digestHex, "00abcdef01234567")
        let reply = WireReply(status: true, code: .ok, message: "ok", seq: 41, server: "r2", stat: stat)
        let text = String(decoding: reply.encoded(), as: UTF8.self)
        XCTAssertTrue(text.contains(#""digest":"00abcdef01234567""#), text)
        XCTAssertTrue(text.contains(#""in_doubt":[{"seq":42,"age_ms":1500,"recovered":true,"blocked":false},"#
                                    + #"{"seq":45,"age_ms":0,"recovered":false,"blocked":true}]"#), text)
        XCTAssertEqual(try WireReply.parse(Array(text.utf8), valueExpected: false).get(), reply)
    }

    func testStatReplyWithNoInDoubt() throws {
        let stat = ReplicaStat(keys: 0, digest: 0, lastCommittedSeq: 0, inDoubt: [])
        let reply = WireReply(status: true, code: .ok, message: "ok", seq: 0, server: "r1", stat: stat)
        XCTAssertTrue(String(decoding: reply.encoded(), as: UTF8.self).contains(#""in_doubt":[]"#))
        XCTAssertEqual(try WireReply.parse(reply.encoded(), valueExpected: false).get().stat, stat)
    }

    func testMissingCodeDefaultsFromStatus() throws {
        XCTAssertEqual(try parse(#"{"status":true,"message":"","server":"r1"}"#).get().code, .ok)
        XCTAssertEqual(try parse(#"{"status":false,"message":"","server":"r1"}"#).get().code, .aborted)
        XCTAssertEqual(try parse(#"{"status":false,"message":"","server":"r1","code":"zzz"}"#).get().code, .aborted)
    }

    func testMalformedJSON() {
        assertBadReply(#"{"status":true"#, containing: "unterminated object")
        assertBadReply("", containing: "unexpected end of input")
        assertBadReply("not json", containing: "invalid")
        assertBadReply(#"{"status":true,"message":"m","server":"r1"} trailing"#, containing: "trailing bytes")
    }

    func testMissingOrMistypedFields() {
        assertBadReply(#"{"message":"m","server":"r1"}"#, containing: "status")
        assertBadReply(#"{"status":"true","message":"m","server":"r1"}"#, containing: "status")
        assertBadReply(#"{"status":true,"server":"r1"}"#, containing: "message")
        assertBadReply(#"{"status":true,"message":5,"server":"r1"}"#, containing: "message")
        assertBadReply(#"{"status":true,"message":"m"}"#, containing: "server")
        assertBadReply(#"[true,"m","r1"]"#, containing: "status")
    }

    func testStatKeysBeyondIntAreRejectedNotFatal() {
        assertBadReply(#"{"status":true,"message":"ok","server":"r1","keys":18446744073709551615,"digest":"0"}"#,
                       containing: "keys")
    }

    func testBadBase64() {
        assertBadReply(#"{"status":true,"message":"!!!","server":"r1","encoding":"base64"}"#,
                       containing: "base64", valueExpected: true)
    }

    func testEveryReplyCodeRoundTrips() throws {
        for code in ReplyCode.allCases {
            let reply = WireReply(status: code == .ok, code: code, message: code.rawValue, seq: 1, server: "r1")
            XCTAssertEqual(try WireReply.parse(reply.encoded(), valueExpected: false).get(), reply)
        }
    }
}
