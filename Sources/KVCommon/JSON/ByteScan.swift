#if canImport(Glibc)
import Glibc
#endif

/// Fast scans over bytes for the hot paths: values of up to megabytes travel through wire lines and JSON
/// strings, where a generic search walks them a byte at a time.
public enum ByteScan {
    /// The offset of the first `byte` at or after `start` in `buffer`, or nil (also when `start` is past the
    /// end). `memchr`, which reads a word at a time (see docs/PERFORMANCE.md, cost per byte).
    public static func firstIndex(of byte: UInt8, in buffer: UnsafeRawBufferPointer, from start: Int = 0) -> Int? {
        guard start < buffer.count, let base = buffer.baseAddress,
              let hit = memchr(base + start, Int32(byte), buffer.count - start) else { return nil }
        return base.distance(to: UnsafeRawPointer(hit))
    }

    private static let ones: UInt64 = 0x0101_0101_0101_0101
    private static let highs: UInt64 = 0x8080_8080_8080_8080

    /// The index of the first byte at or after `start` that a JSON string cannot hold as it is: `"`, `\` or a
    /// control character (< 0x20); `buffer.count` if there is none. Eight bytes per step (SWAR): a word is
    /// looked at byte by byte only if it holds such a byte.
    static func firstJSONSpecial(_ buffer: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var index = start
        if let base = buffer.baseAddress {
            let raw = UnsafeRawPointer(base)
            while index + 8 <= buffer.count {
                let word = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                let quote = word ^ (ones &* 0x22)
                let backslash = word ^ (ones &* 0x5C)
                // A byte of `x` is zero exactly where (x - 0x01) & ~x has its high bit; a byte is below 0x20
                // exactly where (x - 0x20) & ~x does (for thresholds up to 0x80).
                let zeroQuote = (quote &- ones) & ~quote
                let zeroBackslash = (backslash &- ones) & ~backslash
                let control = (word &- ones &* 0x20) & ~word
                if (zeroQuote | zeroBackslash | control) & highs != 0 { break }
                index += 8
            }
        }
        while index < buffer.count {
            let byte = buffer[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { return index }
            index += 1
        }
        return index
    }
}
