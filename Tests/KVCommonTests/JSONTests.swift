import KVCommon
import KVTestSupport
import XCTest

final class JSONTests: XCTestCase {
    private func parse(_ text: String, maxDepth: Int = 64) -> Result<JSONValue, KVError> {
        JSONValue.parse(Array(text.utf8), maxDepth: maxDepth)
    }

    private func string(_ json: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        switch parse(json) {
        case .success(let value):
            XCTAssertNotNil(value.stringValue, "\(json) is not a string", file: file, line: line)
            return value.stringValue
        case .failure(let error):
            XCTFail("\(json): \(error)", file: file, line: line)
            return nil
        }
    }

    private func assertRejects(_ json: String, containing fragment: String, maxDepth: Int = 64,
                               file: StaticString = #filePath, line: UInt = #line) {
        switch parse(json, maxDepth: maxDepth) {
        case .success(let value):
            XCTFail("\(json.prefix(80)) parsed as \(value)", file: file, line: line)
        case .failure(.jsonMalformed(let detail)):
            XCTAssertTrue(detail.contains(fragment), "\(detail.debugDescription) lacks \(fragment.debugDescription)",
                          file: file, line: line)
        case .failure(let other):
            XCTFail("expected jsonMalformed, got \(other)", file: file, line: line)
        }
    }

    // MARK: - JSONValue

    func testScalarsAndContainers() throws {
        let value = try parse(#" { "a" : [1, -2.5e3, true, false, null, "x"], "b": {}, "c": [] } "#).get()
        XCTAssertEqual(value, .object([
            "a": .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null, .string("x")]),
            "b": .object([:]),
            "c": .array([]),
        ]))
        XCTAssertEqual(value["a"]?.arrayValue?.first?.uint64Value, 1)
        XCTAssertEqual(value["a"]?.arrayValue?[1].doubleValue, -2500)
        XCTAssertEqual(value["a"]?.arrayValue?[4].isNull, true)
        XCTAssertNil(value["missing"])
        XCTAssertNil(JSONValue.string("s")["a"])
    }

    func testLargeIntegersSurviveExactly() throws {
        let value = try parse(#"{"seq":18446744073709551615}"#).get()
        XCTAssertEqual(value["seq"]?.uint64Value, UInt64.max)
        XCTAssertNil(try parse("-1").get().uint64Value)
    }

    func testSimpleEscapes() {
        XCTAssertEqual(string(#""a\"b\\c\/d\be\ff\ng\rh\ti""#), "a\"b\\c/d\u{8}e\u{C}f\ng\rh\ti")
    }

    func testUnicodeEscapes() {
        XCTAssertEqual(string(#""\u0041\u00e9\u00E9\u20ac""#), "Aéé€")
        XCTAssertEqual(string(#""\u0000""#), "\u{0}")
        XCTAssertEqual(string(#""\ud83d\ude00""#), "😀")
        XCTAssertEqual(string(#""x\uD834\uDD1Ey""#), "x𝄞y")
        XCTAssertEqual(string("\"raw 😀 é\""), "raw 😀 é")
    }

    func testBadUnicodeEscapes() {
        assertRejects(#""\ud83d""#, containing: "lone surrogate")
        assertRejects(#""\ud83dxx""#, containing: "lone surrogate")
        assertRejects(#""\ud83d\u0041""#, containing: "invalid surrogate pair")
        assertRejects(#""\ude00""#, containing: "invalid code point")
        assertRejects(#""\u12""#, containing: #"invalid \u escape"#)
        assertRejects(#""\u12g4""#, containing: #"invalid \u escape"#)
        assertRejects(#""\u+041""#, containing: #"invalid \u escape"#)
        assertRejects(#""\u-000""#, containing: #"invalid \u escape"#)
    }

    func testBadStrings() {
        assertRejects(#""abc"#, containing: "unterminated string")
        assertRejects(#""a\x""#, containing: "invalid escape")
        assertRejects("\"a\\", containing: "unterminated escape")
        assertRejects("\"line\nbreak\"", containing: "control character")
        assertRejects("\"\u{1}\"", containing: "control character")
        assertRejects(#"{"a" 1}"#, containing: "expected ':'")
        assertRejects(#"{1:2}"#, containing: "expected a key")
        assertRejects(#"[1 2]"#, containing: "expected ',' or ']'")
        assertRejects(#"{"a":1 "b":2}"#, containing: "expected ',' or '}'")
        assertRejects("[1,", containing: "unexpected end of input")
        assertRejects("tru", containing: "invalid literal")
        assertRejects("-", containing: "invalid number")
    }

    /// RFC 8259's number grammar, and finite: a lenient parser would take `+1` or `.5` and turn `1e999` into
    /// infinity.
    func testNumbersFollowTheRFCGrammar() {
        for text in ["+1", ".5", "1.", "01", "-01", "1e", "1e+", "--1", "1e999", "-1e400"] {
            assertRejects(text, containing: "number")
        }
        for text in ["0", "-0", "10", "1.5", "-0.25", "1e9", "1E-3", "2.5e+10", "18446744073709551615"] {
            XCTAssertEqual(try parse(text).get(), .number(text), text)
        }
    }

    func testNonUTF8StringIsRejected() {
        // Plain and after an escape (two paths), a lone byte, a truncated sequence, an overlong one, a surrogate.
        let strings: [[UInt8]] = [[0xFF], [0x61, 0xC3], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0x5C, 0x6E, 0xFF],
                                  [0x7F, 0x5C, 0x74, 0xE2, 0x82]]
        for body in strings {
            switch JSONValue.parse([0x22] + body + [0x22]) {
            case .success(let value): XCTFail("invalid UTF-8 \(body) parsed as \(value)")
            case .failure(let error): XCTAssertTrue(error.description.contains("not UTF-8"), error.description)
            }
        }
        XCTAssertEqual(try JSONValue.parse([0x22, 0x7F, 0x41, 0x22]).get(), .string("\u{7F}A"))
    }

    func testTrailingGarbage() {
        assertRejects("{} x", containing: "trailing bytes")
        assertRejects("1 2", containing: "trailing bytes")
        assertRejects(#"{"a":1}}"#, containing: "trailing bytes after the JSON value at byte 7")
        XCTAssertNoThrow(try parse("{}\r\n\t ").get())
    }

    func testNestingLimit() {
        // The root is at depth 0; a value inside N containers is at depth N.
        XCTAssertNoThrow(try parse("[[1]]", maxDepth: 2).get())
        assertRejects("[[[1]]]", containing: "nesting deeper than 2", maxDepth: 2)
        assertRejects(#"{"a":{"b":{"c":1}}}"#, containing: "nesting deeper than 2", maxDepth: 2)
        let fine = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNoThrow(try parse(fine).get())
        // Deep input must fail cleanly instead of exhausting the stack.
        let hostile = String(repeating: "[", count: 100_000)
        assertRejects(hostile, containing: "nesting deeper than 64")
    }

    // MARK: - JSONWriter

    func testWriterEscapesControlCharactersAndQuotes() throws {
        let tricky = "quote\" backslash\\ slash/ nl\n cr\r tab\t nul\u{0} bell\u{7} us\u{1F} del\u{7F} é 😀"
        var writer = JSONWriter()
        writer.field("text", tricky)
        let bytes = writer.finish()
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains(#"quote\" backslash\\ slash/ nl\n cr\r tab\t nul\u0000 bell\u0007 us\u001f"#),
                      text)
        XCTAssertFalse(bytes.contains { $0 < 0x20 }, "no raw control character may remain")
        XCTAssertEqual(try JSONValue.parse(bytes).get()["text"]?.stringValue, tricky)
    }

    func testWriterEveryControlCharacterParsesBack() throws {
        let all = String(decoding: (0..<0x20).map { UInt8($0) }, as: UTF8.self)
        var writer = JSONWriter()
        writer.field(all, all)
        let parsed = try JSONValue.parse(writer.finish()).get()
        XCTAssertEqual(parsed, .object([all: .string(all)]))
    }

    /// Strings are scanned eight bytes at a time: a byte that needs an escape must be found at every position of
    /// a word and across word boundaries, and long runs must be copied intact.
    func testWriterAndParserRoundTripStringsWithSpecialsAtEveryOffset() throws {
        let specials: [UInt8] = [0x22, 0x5C, 0x00, 0x0A, 0x1F, 0x20, 0x21, 0x5B, 0x5D, 0x7F, 0x80]
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000] {
            for position in Set([0, length / 2, max(0, length - 1)]) where position < max(length, 1) {
                for special in specials {
                    var bytes = Array(repeating: UInt8(ascii: "v"), count: max(length, 1))
                    bytes[position] = special
                    if special == 0x80 && position + 1 < bytes.count {
                        bytes[position] = 0xC3  // é: bytes at and above 0x80 pass through unescaped
                        bytes[position + 1] = 0xA9
                    }
                    guard let text = String(validating: bytes, as: UTF8.self) else { continue }
                    var writer = JSONWriter()
                    writer.field("t", text)
                    let encoded = writer.finish()
                    XCTAssertFalse(encoded.contains { $0 < 0x20 }, "raw control byte at length \(length) position \(position)")
                    XCTAssertEqual(try JSONValue.parse(encoded).get()["t"]?.stringValue, text,
                                   "length \(length), byte \(special) at \(position)")
                }
            }
        }
        var generator = SplitMix64(seed: 7)
        for _ in 0..<300 {
            let count = Int.random(in: 0..<200, using: &generator)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...0x7F, using: &generator) }
            let text = String(decoding: bytes, as: UTF8.self)
            var writer = JSONWriter()
            writer.field("t", text)
            XCTAssertEqual(try JSONValue.parse(writer.finish()).get()["t"]?.stringValue, text)
        }
    }

    func testWriterFieldTypes() throws {
        var inner = JSONWriter()
        inner.field("n", 1)
        var writer = JSONWriter()
        writer.field("s", "v")
        writer.field("t", true)
        writer.field("f", false)
        writer.field("u", UInt64.max)
        writer.field("none", nil as UInt64?)
        writer.field("i", -42)
        writer.field("d", 1.5)
        writer.field("list", rawJSON: JSONWriter.array([inner.finish(), Array("2".utf8)]))
        writer.field("empty", rawJSON: JSONWriter.array([]))
        let bytes = writer.finish()
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self),
                       #"{"s":"v","t":true,"f":false,"u":18446744073709551615,"none":null,"i":-42,"d":1.5,"#
                       + #""list":[{"n":1},2],"empty":[]}"#)
        let value = try JSONValue.parse(bytes).get()
        XCTAssertEqual(value["u"]?.uint64Value, UInt64.max)
        XCTAssertEqual(value["d"]?.doubleValue, 1.5)
        XCTAssertEqual(value["list"]?.arrayValue?.count, 2)
    }

    func testEmptyWriter() {
        var writer = JSONWriter()
        XCTAssertEqual(writer.finish(), Array("{}".utf8))
    }

    func testWriterRoundTripsRandomUnicode() throws {
        var random = SplitMix64(seed: 42)
        for _ in 0..<200 {
            let scalars = (0..<Int.random(in: 0...30, using: &random)).compactMap { _ -> Character? in
                let pick = Int.random(in: 0..<4, using: &random)
                let range: ClosedRange<UInt32> = pick == 0 ? 0...0x7F : pick == 1 ? 0x80...0x7FF
                    : pick == 2 ? 0x800...0xFFFF : 0x10000...0x10FFFF
                return Unicode.Scalar(UInt32.random(in: range, using: &random)).map(Character.init)
            }
            let text = String(scalars)
            var writer = JSONWriter()
            writer.field("k", text)
            XCTAssertEqual(try JSONValue.parse(writer.finish()).get()["k"]?.stringValue, text)
        }
    }
}
