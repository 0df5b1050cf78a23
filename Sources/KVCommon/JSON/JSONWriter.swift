/// Builds one JSON object into a byte buffer without intermediate allocations per field.
///
/// Usage: `var w = JSONWriter(); w.field("status", true); w.field("message", "ok"); let bytes = w.finish()`.
public struct JSONWriter {
    public private(set) var bytes: [UInt8]
    private var needsComma = false

    public init(capacity: Int = 128) {
        bytes = []
        bytes.reserveCapacity(capacity)
        bytes.append(UInt8(ascii: "{"))
    }

    public mutating func field(_ name: String, _ value: String) {
        key(name)
        Self.appendString(value.utf8, to: &bytes)
    }

    public mutating func field(_ name: String, _ value: Bool) {
        key(name)
        bytes.append(contentsOf: value ? Array("true".utf8) : Array("false".utf8))
    }

    public mutating func field(_ name: String, _ value: UInt64?) {
        key(name)
        if let value { bytes.append(contentsOf: String(value).utf8) } else { bytes.append(contentsOf: "null".utf8) }
    }

    public mutating func field(_ name: String, _ value: Int) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func field(_ name: String, _ value: Double) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    /// Inserts `json`, which must already be valid JSON (an object or array built by another writer).
    public mutating func field(_ name: String, rawJSON json: [UInt8]) {
        key(name)
        bytes.append(contentsOf: json)
    }

    /// Finishes the object and returns its bytes.
    public mutating func finish() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    /// Encodes `values` (already-valid JSON texts) as a JSON array.
    public static func array(_ values: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: value)
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    /// Encodes `values` as a JSON array of strings.
    public static func array(strings values: [String]) -> [UInt8] {
        array(values.map { value in
            var quoted: [UInt8] = []
            appendString(value.utf8, to: &quoted)
            return quoted
        })
    }

    /// Appends `text` as a quoted JSON string with the escapes RFC 8259 requires.
    public static func appendString<S: Sequence>(_ text: S, to out: inout [UInt8]) where S.Element == UInt8 {
        let done: Void? = text.withContiguousStorageIfAvailable { appendEscaped($0, to: &out) }
        if done == nil { Array(text).withUnsafeBufferPointer { appendEscaped($0, to: &out) } }
    }

    /// The length of `bytes` as a JSON string body (without the quotes), or nil as soon as it passes `limit`:
    /// a control character takes six bytes (`\u0001`), so a value of such bytes grows six-fold.
    public static func escapedLength(_ bytes: UnsafeBufferPointer<UInt8>, limit: Int) -> Int? {
        var length = 0
        var runStart = 0
        while true {
            let index = ByteScan.firstJSONSpecial(bytes, from: runStart)
            length += index - runStart
            if length > limit { return nil }
            guard index < bytes.count else { return length }
            switch bytes[index] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0A, 0x0D, 0x09: length += 2
            default: length += 6
            }
            runStart = index + 1
        }
    }

    /// The string body is copied in runs between the bytes that need an escape (a value of megabytes is mostly
    /// one run), not byte by byte.
    private static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.reserveCapacity(out.count + bytes.count + 2)
        out.append(UInt8(ascii: "\""))
        var runStart = 0
        while true {
            let index = ByteScan.firstJSONSpecial(bytes, from: runStart)
            guard index < bytes.count else { break }
            let byte = bytes[index]
            if runStart < index { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index])) }
            runStart = index + 1
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            default:
                let hex: StaticString = "0123456789abcdef"
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                        hex.utf8Start[Int(byte >> 4)], hex.utf8Start[Int(byte & 0x0F)]])
            }
        }
        if runStart < bytes.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...])) }
        out.append(UInt8(ascii: "\""))
    }

    private mutating func key(_ name: String) {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        needsComma = true
        Self.appendString(name.utf8, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }
}
