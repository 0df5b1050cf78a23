/// Little-endian encoding helpers for record payloads.
public struct BinaryWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    public mutating func u32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func u64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// A length-prefixed (u32) byte string.
    public mutating func blob<C: Collection>(_ value: C) where C.Element == UInt8 {
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }
}

/// Reads what `BinaryWriter` wrote; every read checks bounds and throws `KVError.recordMalformed`.
public struct BinaryReader {
    private let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var isAtEnd: Bool { offset == bytes.count }

    public mutating func u8() throws -> UInt8 {
        guard offset < bytes.count else { throw KVError.recordMalformed("truncated at byte \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u32() throws -> UInt32 {
        var value: UInt32 = 0
        for shift in stride(from: 0, to: 32, by: 8) { value |= UInt32(try u8()) << UInt32(shift) }
        return value
    }

    public mutating func u64() throws -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 8) { value |= UInt64(try u8()) << UInt64(shift) }
        return value
    }

    public mutating func blob(limit: Int = 1 << 30) throws -> [UInt8] {
        let count = Int(try u32())
        guard count <= limit, bytes.count - offset >= count else {
            throw KVError.recordMalformed("blob of \(count) bytes overruns the record at byte \(offset)")
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}
