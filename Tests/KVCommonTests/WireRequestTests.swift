import KVCommon
import KVTestSupport
import XCTest

final class WireRequestTests: XCTestCase {
    private func parse(_ line: String, maxLineBytes: Int = 1 << 22) -> Result<WireRequest, KVError> {
        WireRequest.parse(Array(line.utf8), maxLineBytes: maxLineBytes)
    }

    private func assertParses(_ line: String, _ expected: WireRequest, file: StaticString = #filePath,
                              line number: UInt = #line) {
        switch parse(line) {
        case .success(let request): XCTAssertEqual(request, expected, line, file: file, line: number)
        case .failure(let error): XCTFail("\(line.debugDescription): \(error)", file: file, line: number)
        }
    }

    private func assertFails(_ line: String, _ expected: KVError, maxLineBytes: Int = 1 << 22,
                             file: StaticString = #filePath, line number: UInt = #line) {
        switch parse(line, maxLineBytes: maxLineBytes) {
        case .success(let request):
            XCTFail("\(line.debugDescription) parsed as \(request)", file: file, line: number)
        case .failure(let error):
            XCTAssertEqual(error, expected, line.debugDescription, file: file, line: number)
        }
    }

    // MARK: - The user's examples

    func testUserExamplesParse() {
        assertParses(";get;key", WireRequest(seq: nil, command: .get, key: Array("key".utf8), value: []))
        assertParses("7;put;key;value", WireRequest(seq: 7, command: .put, key: Array("key".utf8),
                                                    value: Array("value".utf8)))
        assertParses("7;del;key;", WireRequest(seq: 7, command: .del, key: Array("key".utf8), value: []))
        assertParses("7;com;;", WireRequest(seq: 7, command: .com, key: [], value: []))
        assertParses("7;abrt;;", WireRequest(seq: 7, command: .abrt, key: [], value: []))
    }

    func testFourFieldGetAndStatParse() {
        assertParses(";get;key;", .get(Array("key".utf8)))
        assertParses(";stat;;", .stat)
    }

    func testTrailingLineEndingsAreIgnored() {
        assertParses(";get;key\r\n", .get(Array("key".utf8)))
        assertParses(";get;key\n", .get(Array("key".utf8)))
        assertParses("7;put;key;value\r\n", .put(7, Array("key".utf8), Array("value".utf8)))
        assertParses("7;com;;\n", .com(7))
    }

    func testLargestSeqParses() {
        assertParses("18446744073709551615;com;;", .com(UInt64.max))
    }

    func testEncodedFormsOfTheExamples() {
        XCTAssertEqual(WireRequest.get(Array("key".utf8)).encoded(), Array(";get;key;\n".utf8))
        XCTAssertEqual(WireRequest.put(7, Array("key".utf8), Array("value".utf8)).encoded(),
                       Array("7;put;key;value\n".utf8))
        XCTAssertEqual(WireRequest.del(7, Array("key".utf8)).encoded(), Array("7;del;key;\n".utf8))
        XCTAssertEqual(WireRequest.com(7).encoded(), Array("7;com;;\n".utf8))
        XCTAssertEqual(WireRequest.abrt(7).encoded(), Array("7;abrt;;\n".utf8))
        XCTAssertEqual(WireRequest.stat.encoded(), Array(";stat;;\n".utf8))
    }

    // MARK: - Round trip

    func testRoundTripOfArbitraryBytes() {
        var random = SplitMix64(seed: 0x5EED_0001)
        let fixed: [[UInt8]] = [
            Array(0...255),
            Array(";;;%%%\r\n\r\n".utf8),
            Array("ключ 🔑 %41 ;".utf8),
            [0x0D], [0x0A], [UInt8(ascii: "%")], [UInt8(ascii: ";")],
        ]
        var cases: [(key: [UInt8], value: [UInt8])] = fixed.map { ($0, $0.reversed()) }
        for _ in 0..<400 {
            var key = random.bytes(count: Int.random(in: 1...40, using: &random))
            if Bool.random(using: &random) { key += Array("ü€😀".utf8) }
            cases.append((key, random.bytes(count: Int.random(in: 0...200, using: &random))))
        }
        for (index, item) in cases.enumerated() {
            let seq = UInt64.random(in: 1...UInt64.max, using: &random)
            let requests: [WireRequest] = [
                .put(seq, item.key, item.value), .del(seq, item.key), .get(item.key), .com(seq), .abrt(seq),
            ]
            for request in requests {
                let line = request.encoded()
                XCTAssertEqual(line.last, 0x0A, "case \(index)")
                XCTAssertEqual(line.filter { $0 == 0x0A }.count, 1, "case \(index): only the terminator is a LF")
                XCTAssertFalse(line.contains(0x0D), "case \(index): CR must be escaped")
                XCTAssertEqual(line.filter { $0 == UInt8(ascii: ";") }.count, 3, "case \(index)")
                XCTAssertEqual(WireRequest.parse(line), .success(request), "case \(index) \(request.command)")
            }
        }
    }

    // MARK: - Malformed lines

    func testWrongFieldCounts() {
        assertFails("7;put;key", .wireFieldCount(found: 3))
        assertFails("7;del;key", .wireFieldCount(found: 3))
        assertFails(";stat;", .wireFieldCount(found: 3))
        assertFails("7;put;key;value;extra", .wireFieldCount(found: 5))
        assertFails(";get;key;;", .wireFieldCount(found: 5))
        assertFails("", .wireFieldCount(found: 1))
        assertFails("\r\n", .wireFieldCount(found: 1))
        assertFails("get key", .wireFieldCount(found: 1))
        assertFails(";get", .wireFieldCount(found: 2))
    }

    func testUnknownCommand() {
        assertFails("7;set;key;value", .wireUnknownCommand("set"))
        assertFails("7;PUT;key;value", .wireUnknownCommand("PUT"))
        assertFails(";;key;", .wireUnknownCommand(""))
    }

    func testBadSeq() {
        assertFails("x;put;key;value", .wireBadSeq("x"))
        assertFails("-1;put;key;value", .wireBadSeq("-1"))
        assertFails("0;put;key;value", .wireBadSeq("0"))
        assertFails("+5;put;key;value", .wireBadSeq("+5"))
        assertFails(" 5;com;;", .wireBadSeq(" 5"))
        assertFails("123456789012345678901;com;;", .wireBadSeq("123456789012345678901"))
        assertFails("18446744073709551616;com;;", .wireBadSeq("18446744073709551616"))
    }

    func testSeqRules() {
        assertFails("7;get;key;", .wireSeqNotAllowed(.get))
        assertFails("7;get;key", .wireSeqNotAllowed(.get))
        assertFails("7;stat;;", .wireSeqNotAllowed(.stat))
        assertFails(";put;key;value", .wireSeqRequired(.put))
        assertFails(";del;key;", .wireSeqRequired(.del))
        assertFails(";com;;", .wireSeqRequired(.com))
        assertFails(";abrt;;", .wireSeqRequired(.abrt))
    }

    func testKeyAndValueRules() {
        assertFails("7;put;;value", .wireKeyRequired(.put))
        assertFails("7;del;;", .wireKeyRequired(.del))
        assertFails(";get;;", .wireKeyRequired(.get))
        assertFails(";get;", .wireKeyRequired(.get))
        assertFails("7;com;key;", .wireFieldNotAllowed(.com, field: "key"))
        assertFails("7;abrt;key;", .wireFieldNotAllowed(.abrt, field: "key"))
        assertFails(";stat;key;", .wireFieldNotAllowed(.stat, field: "key"))
        assertFails("7;del;key;value", .wireFieldNotAllowed(.del, field: "value"))
        assertFails(";get;key;value", .wireFieldNotAllowed(.get, field: "value"))
        assertFails("7;com;;value", .wireFieldNotAllowed(.com, field: "value"))
    }

    func testBadEscapes() {
        assertFails("7;put;k%zz;v", .wireBadEscape(field: "key", offset: 1))
        assertFails("7;put;key;ab%4", .wireBadEscape(field: "value", offset: 2))
        assertFails("7;put;key;value%", .wireBadEscape(field: "value", offset: 5))
        assertFails("7;put;%;v", .wireBadEscape(field: "key", offset: 0))
        assertFails(";get;ok%41%g1", .wireBadEscape(field: "key", offset: 5))
        assertFails("7;put;key;%+1", .wireBadEscape(field: "value", offset: 0))
    }

    func testOverLongLine() {
        let line = "7;put;key;" + String(repeating: "v", count: 100)
        assertFails(line, .wireLineTooLong(limit: 64), maxLineBytes: 64)
        // The terminator does not count against the limit.
        let exact = "7;put;key;" + String(repeating: "v", count: 54)
        XCTAssertEqual(exact.utf8.count, 64)
        XCTAssertNoThrow(try parse(exact + "\r\n", maxLineBytes: 64).get())
        assertFails(exact + "v\n", .wireLineTooLong(limit: 64), maxLineBytes: 64)
    }

    func testGarbageNeverCrashes() {
        var random = SplitMix64(seed: 0xBAD_11E5)
        let alphabet = Array("0123456789;;;%%getputdelcomabrtstat\r\nxyz".utf8) + [0x00, 0xFF]
        for _ in 0..<2000 {
            let length = Int.random(in: 0...24, using: &random)
            let line = (0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &random)] }
            if case .success(let request) = WireRequest.parse(line) {
                // Whatever parses must satisfy the per-command rules.
                XCTAssertEqual(request.seq != nil, request.command.needsSeq)
                XCTAssertEqual(!request.key.isEmpty, request.command.needsKey)
                if !request.command.takesValue { XCTAssertTrue(request.value.isEmpty) }
            }
        }
    }

    // MARK: - PercentCoding

    func testOnlyFourBytesAreEscaped() {
        let all = [UInt8](0...255)
        let encoded = PercentCoding.encode(all)
        XCTAssertEqual(encoded.count, 256 + 4 * 2)
        for byte in all {
            let escaped = PercentCoding.encode([byte])
            switch byte {
            case UInt8(ascii: "%"): XCTAssertEqual(escaped, Array("%25".utf8))
            case UInt8(ascii: ";"): XCTAssertEqual(escaped, Array("%3B".utf8))
            case 0x0D: XCTAssertEqual(escaped, Array("%0D".utf8))
            case 0x0A: XCTAssertEqual(escaped, Array("%0A".utf8))
            default: XCTAssertEqual(escaped, [byte], "byte \(byte)")
            }
        }
        XCTAssertEqual(PercentCoding.decode(encoded[...]), .success(all))
    }

    func testPlainASCIIIsUnchanged() {
        let text = Array("Hello, World! user:42/profile?x=1&y=2 ~`'\"{}[]<>".utf8)
        XCTAssertEqual(PercentCoding.encode(text), text)
        XCTAssertEqual(PercentCoding.decode(text[...]), .success(text))
    }

    func testDecodeAcceptsEitherHexCase() {
        XCTAssertEqual(PercentCoding.decode(Array("a%3bb%3Bc%0a%0D%ff".utf8)[...]),
                       .success(Array("a;b;c\n\r".utf8) + [0xFF]))
    }

    func testDecodeReportsOffsetWithinSlice() {
        let bytes = Array("xxab%zz".utf8)
        guard case .failure(let error) = PercentCoding.decode(bytes[2...]) else { return XCTFail("decoded") }
        XCTAssertEqual(error.offset, 2)
    }

    /// The byte search behind line framing, field splitting and escape detection agrees with a plain search at
    /// every starting offset, including past the end.
    func testByteScanFirstIndexMatchesAPlainSearch() {
        var random = SplitMix64(seed: 0x5CA7)
        let bytes = random.bytes(count: 300)
        for target in [UInt8(ascii: ";"), UInt8(ascii: "%"), 0x0A, 0x42] {
            for start in 0...(bytes.count + 1) {
                let expected = start < bytes.count ? bytes[start...].firstIndex(of: target) : nil
                let found = bytes.withUnsafeBytes { ByteScan.firstIndex(of: target, in: $0, from: start) }
                XCTAssertEqual(found, expected, "byte \(target) from \(start)")
            }
        }
        XCTAssertNil([UInt8]().withUnsafeBytes { ByteScan.firstIndex(of: 0x0A, in: $0) })
    }
}
