/// A small recursive-descent JSON parser over bytes; see `JSONValue.parse`.
struct JSONParser {
    private let bytes: [UInt8]
    private var index = 0
    private let maxDepth: Int

    init(_ bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() -> Result<JSONValue, KVError> {
        do {
            let value = try parseValue(depth: 0)
            skipWhitespace()
            guard index == bytes.count else { throw fail("trailing bytes after the JSON value") }
            return .success(value)
        } catch let error as KVError {
            return .failure(error)
        } catch {
            return .failure(.jsonMalformed("\(error)"))
        }
    }

    private func fail(_ what: String) -> KVError { .jsonMalformed("\(what) at byte \(index)") }

    /// Parses a document, handing each member of the top-level object to `visit` in order instead of building a
    /// dictionary: the cheap way to read a small object with known keys (a wire reply). Any other valid JSON
    /// value has no members.
    mutating func parseMembers(_ visit: (String, JSONValue) throws -> Void) -> KVError? {
        do {
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "{") {
                try parseObjectMembers(depth: 0, visit)
            } else {
                _ = try parseValue(depth: 0)  // valid JSON that is not an object has no members
            }
            skipWhitespace()
            guard index == bytes.count else { throw fail("trailing bytes after the JSON value") }
            return nil
        } catch let error as KVError {
            return error
        } catch {
            return .jsonMalformed("\(error)")
        }
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws -> JSONValue {
        guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        skipWhitespace()
        guard index < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        default: return try parseNumber()
        }
    }

    /// Compares in place, copying neither the literal nor the input (this runs for every `true`, `false`, `null`).
    private mutating func expectLiteral(_ literal: StaticString) throws {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw fail("invalid literal") }
        let expected = literal.utf8Start
        for offset in 0..<count where bytes[index + offset] != expected[offset] { throw fail("invalid literal") }
        index += count
    }

    private mutating func parseObject(depth: Int) throws -> JSONValue {
        var members: [String: JSONValue] = [:]
        try parseObjectMembers(depth: depth) { key, value in members[key] = value }
        return .object(members)
    }

    /// The object at `index` (its `{`), member by member.
    private mutating func parseObjectMembers(depth: Int, _ visit: (String, JSONValue) throws -> Void) throws {
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            try visit(key, try parseValue(depth: depth + 1))
            skipWhitespace()
            guard index < bytes.count else { throw fail("unterminated object") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            guard bytes[index] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
            index += 1
            return
        }
    }

    private mutating func parseArray(depth: Int) throws -> JSONValue {
        index += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
        while true {
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard index < bytes.count else { throw fail("unterminated array") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            guard bytes[index] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
            index += 1
            return .array(items)
        }
    }

    /// A number as RFC 8259 writes it: `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`, and finite (no
    /// `+1`, `.5`, `01` or `1e999`).
    private mutating func parseNumber() throws -> JSONValue {
        let start = index
        func isDigit(_ at: Int) -> Bool { at < bytes.count && bytes[at] >= UInt8(ascii: "0") && bytes[at] <= UInt8(ascii: "9") }
        func digits() throws {
            guard isDigit(index) else { throw fail("invalid number") }
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        if index < bytes.count, bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            try digits()
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            try digits()
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            try digits()
        }
        if isDigit(index) { throw fail("invalid number (a leading zero)") }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let number = Double(text), number.isFinite else { throw fail("number out of range") }
        return .number(text)
    }

    private mutating func parseString() throws -> String {
        index += 1
        // Fast path: no escapes before the closing quote, so the text is a slice of the input.
        let end = bytes.withUnsafeBufferPointer { ByteScan.firstJSONSpecial($0, from: index) }
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            guard let text = bytes.withUnsafeBufferPointer({ Self.text(UnsafeBufferPointer(rebasing: $0[index..<end])) })
            else { throw fail("string is not UTF-8") }
            index = end + 1
            return text
        }
        var out: [UInt8] = Array(bytes[index..<end])
        index = end
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = out.withUnsafeBufferPointer(Self.text) else { throw fail("string is not UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw fail("unterminated escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): try appendUnicodeEscape(to: &out)
                default: throw fail("invalid escape")
                }
            case 0x00..<0x20:
                throw fail("control character in string")
            default:
                out.append(byte)
            }
        }
        throw fail("unterminated string")
    }

    /// The bytes as a string, nil unless they are UTF-8. ASCII, which every key and message of a wire reply
    /// is in practice, skips `String(validating:)`: it is generic over the encoding and looks up type metadata
    /// on every call, a cost the master's event loop paid several times per reply.
    private static func text(_ utf8: UnsafeBufferPointer<UInt8>) -> String? {
        var combined: UInt8 = 0
        for byte in utf8 { combined |= byte }
        if combined < 0x80 { return String(decoding: utf8, as: UTF8.self) }
        return String(validating: utf8, as: UTF8.self)
    }

    private mutating func readHex4() throws -> UInt32 {
        // Exactly four hex digits: `UInt32(_:radix:)` alone would also accept a sign, e.g. `\u+041`.
        guard bytes.count - index >= 4, !bytes[index..<index + 4].contains(UInt8(ascii: "+")),
              !bytes[index..<index + 4].contains(UInt8(ascii: "-")),
              let value = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16)
        else { throw fail("invalid \\u escape") }
        index += 4
        return value
    }

    private mutating func appendUnicodeEscape(to out: inout [UInt8]) throws {
        var scalar = try readHex4()
        if (0xD800..<0xDC00).contains(scalar) {
            guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else { throw fail("lone surrogate") }
            index += 2
            let low = try readHex4()
            guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid surrogate pair") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        }
        guard let unicode = Unicode.Scalar(scalar) else { throw fail("invalid code point") }
        out.append(contentsOf: Array(String(Character(unicode)).utf8))
    }
}
