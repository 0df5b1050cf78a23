/// Percent-encoding of wire fields.
///
/// Only the four bytes that would break the line format are escaped: `%` (the escape itself), `;` (the field
/// separator), CR and LF. Every other byte, printable or not, travels as is, so plain ASCII stays readable.
/// Decoding accepts any `%XX` with two hex digits (either case) and rejects everything else after a `%`.
public enum PercentCoding {
    /// Appends `field` to `out`, escaping `%`, `;`, CR and LF.
    public static func encode(_ field: [UInt8], into out: inout [UInt8]) {
        guard field.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: ";") || $0 == 0x0D || $0 == 0x0A })
        else {
            out.append(contentsOf: field)
            return
        }
        for byte in field {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: ";"), 0x0D, 0x0A:
                out.append(UInt8(ascii: "%"))
                out.append(hexDigit(byte >> 4))
                out.append(hexDigit(byte & 0x0F))
            default:
                out.append(byte)
            }
        }
    }

    /// Returns the escaped form of `field`.
    public static func encode(_ field: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        encode(field, into: &out)
        return out
    }

    /// Decodes `field`; returns the offset of the first malformed escape on failure.
    public static func decode(_ field: ArraySlice<UInt8>) -> Result<[UInt8], MalformedEscape> {
        // Most fields have no escape at all: find that out with `memchr` (fields can be megabytes) and copy the
        // field as it is.
        let hasEscape = field.withUnsafeBytes { ByteScan.firstIndex(of: UInt8(ascii: "%"), in: $0) != nil }
        guard hasEscape else { return .success(Array(field)) }
        var out: [UInt8] = []
        out.reserveCapacity(field.count)
        var index = field.startIndex
        while index < field.endIndex {
            let byte = field[index]
            if byte != UInt8(ascii: "%") {
                out.append(byte)
                index += 1
                continue
            }
            guard field.endIndex - index >= 3,
                  let high = hexValue(field[index + 1]), let low = hexValue(field[index + 2])
            else {
                return .failure(MalformedEscape(offset: index - field.startIndex))
            }
            out.append(high << 4 | low)
            index += 3
        }
        return .success(out)
    }

    /// A `%` not followed by two hex digits, at `offset` bytes into the field.
    public struct MalformedEscape: Error, Equatable {
        public let offset: Int
    }

    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
    }

    /// The value of one hex digit, either case (also `HexCoding`'s).
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
