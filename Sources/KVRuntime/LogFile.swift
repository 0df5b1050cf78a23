import Foundation
import KVCommon

/// An append-only file of checksummed records: an 8-byte magic header, then frames of
/// `[payload length u32 LE][CRC-32C of payload u32 LE][payload]`.
///
/// Opening reads every frame. A damaged frame at the very end (a crash mid-append) is cut off and reported
/// through `discardedTailBytes`; a damaged frame anywhere else throws `StorageError.corrupt` with the offset,
/// because dropping it would silently lose acknowledged data.
public final class LogFile {
    public static let magic: [UInt8] = Array("KVLOG01\n".utf8)
    /// The header of snapshot files, which use the same framing.
    public static let snapshotMagic: [UInt8] = Array("KVSNAP1\n".utf8)
    public static let frameHeaderBytes = 8
    public static let payloadBytesMax = 256 << 20

    public let path: String
    private let fd: Int32
    /// Bytes of a torn final frame removed at open (0 when the file ended cleanly).
    public let discardedTailBytes: Int
    public private(set) var sizeBytes: Int

    /// Opens (creating if needed) the log at `path`, calling `onRecord` for each intact payload in order.
    public init(path: String, onRecord: ([UInt8], Int) throws -> Void) throws {
        self.path = path
        let exists = FileManager.default.fileExists(atPath: path)
        fd = try FileIO.open(path, flags: O_RDWR | O_CREAT)
        do {
            let bytes = exists ? try FileIO.readAll(path) : []
            if bytes.isEmpty {
                try FileIO.truncate(fd, to: 0, path: path)
                try FileIO.writeAll(fd, Self.magic, path: path)
                try FileIO.fsync(fd, path: path)
                try FileIO.fsyncDirectory((path as NSString).deletingLastPathComponent)
                discardedTailBytes = 0
                sizeBytes = Self.magic.count
                return
            }
            let validBytes = try Self.scan(bytes, path: path, magic: Self.magic, onRecord: onRecord)
            discardedTailBytes = bytes.count - validBytes
            if discardedTailBytes > 0 {
                try FileIO.truncate(fd, to: validBytes, path: path)
                try FileIO.fsync(fd, path: path)
            }
            sizeBytes = validBytes
            lseek(fd, off_t(validBytes), SEEK_SET)
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// The frame for `payload`, ready to append.
    public static func frame(_ payload: [UInt8]) -> [UInt8] {
        var writer = BinaryWriter(capacity: payload.count + frameHeaderBytes)
        appendFrame(to: &writer) { $0.raw(payload) }
        return writer.bytes
    }

    /// Appends one frame to `writer` in place: reserves the header, lets `encode` write the payload after it,
    /// then fills in the payload's length and checksum. No array per record.
    public static func appendFrame(to writer: inout BinaryWriter, _ encode: (inout BinaryWriter) -> Void) {
        let header = writer.count
        writer.u32(0)
        writer.u32(0)
        encode(&writer)
        let length = writer.count - header - frameHeaderBytes
        precondition(length > 0, "log records are never empty")
        let checksum = writer.bytes.withUnsafeBufferPointer {
            CRC32C.checksum(UnsafeBufferPointer(rebasing: $0[(header + frameHeaderBytes)...]))
        }
        writer.patchU32(UInt32(length), at: header)
        writer.patchU32(checksum, at: header + 4)
    }

    /// Appends already-framed bytes. Not durable until `sync()` returns.
    public func append(framed bytes: [UInt8]) throws {
        try FileIO.writeAll(fd, bytes, path: path)
        sizeBytes += bytes.count
    }

    /// Makes everything appended so far durable.
    public func sync() throws {
        try FileIO.fdatasync(fd, path: path)
    }

    /// Walks the frames of `bytes`; returns the length of the intact prefix.
    ///
    /// A bad frame (length past the end, checksum mismatch) counts as a torn append only if no intact frame
    /// starts anywhere after it: a crash mid-write damages the end of the file, never the middle.
    public static func scan(_ bytes: [UInt8], path: String, magic: [UInt8],
                            onRecord: ([UInt8], Int) throws -> Void) throws -> Int {
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw StorageError.badHeader(path: path)
        }
        var offset = magic.count
        while offset < bytes.count {
            guard let payload = intactFrame(in: bytes, at: offset) else {
                if let later = firstIntactFrame(in: bytes, after: offset) {
                    throw StorageError.corrupt(path: path, offset: offset,
                                               detail: "damaged record (intact records follow at byte \(later))")
                }
                return offset
            }
            do {
                try onRecord(payload, offset)
            } catch let error as KVError {
                throw StorageError.corrupt(path: path, offset: offset, detail: error.description)
            }
            offset += frameHeaderBytes + payload.count
        }
        return offset
    }

    /// The payload of the frame at `offset` if its length fits and its checksum matches.
    private static func intactFrame(in bytes: [UInt8], at offset: Int) -> [UInt8]? {
        guard bytes.count - offset >= frameHeaderBytes else { return nil }
        let length = Int(littleEndianU32(bytes, offset))
        let checksum = littleEndianU32(bytes, offset + 4)
        guard length > 0, length <= payloadBytesMax, bytes.count - offset - frameHeaderBytes >= length else {
            return nil
        }
        let payload = Array(bytes[(offset + frameHeaderBytes)..<(offset + frameHeaderBytes + length)])
        return CRC32C.checksum(payload) == checksum ? payload : nil
    }

    private static func firstIntactFrame(in bytes: [UInt8], after offset: Int) -> Int? {
        var candidate = offset + 1
        while candidate + frameHeaderBytes < bytes.count {
            if intactFrame(in: bytes, at: candidate) != nil { return candidate }
            candidate += 1
        }
        return nil
    }

    private static func littleEndianU32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }
}
