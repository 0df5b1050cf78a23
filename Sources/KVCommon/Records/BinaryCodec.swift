/// Little-endian encoding helpers for record payloads.
public struct BinaryWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    /// Continues writing after `bytes` (which keep their capacity), so many records can share one buffer.
    public init(appendingTo bytes: [UInt8]) { self.bytes = bytes }

    public var count: Int { bytes.count }

    /// Empties the buffer, keeping its capacity.
    public mutating func removeAll() { bytes.removeAll(keepingCapacity: true) }

    /// Overwrites 4 bytes at `offset` (a length or checksum reserved before its payload was written).
    public mutating func patchU32(_ value: UInt32, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { source in
            for index in 0..<4 { bytes[offset + index] = source[index] }
        }
    }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    public mutating func u32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func u64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Bytes as they are, without a length.
    public mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }

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

    /// A blob that must be UTF-8 text (replica ids, hosts, master names): bytes that are not are refused, never
    /// repaired, so a record decodes to exactly what was written or not at all.
    public mutating func text(limit: Int = 1024) throws -> String {
        let at = offset
        let raw = try blob(limit: limit)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw KVError.recordMalformed("text at byte \(at) is not UTF-8")
        }
        return text
    }
}
