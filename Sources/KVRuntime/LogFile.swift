import Foundation
import KVCommon

/// An append-only file of checksummed records, written in batches: an 8-byte magic, then batches of
/// `[tag "KVB1" u32][body length u32][CRC-32C of tag and length u32][body]`, where the body is frames of
/// `[payload length u32 LE][CRC-32C of payload u32 LE][payload]`. One batch is one group-commit write.
///
/// Opening reads every record. A crash can only damage the batch being appended, so a damaged batch at the end
/// (its header torn, its length past the end of the file, or a frame inside it damaged) with no intact batch
/// after it is cut off and reported through `discardedTailBytes`; anything else throws `StorageError.corrupt`
/// with the offset, because dropping it would silently lose acknowledged data. Bytes inside a batch whose
/// header is intact are never searched for later batches: a value may hold anything, frames included.
///
/// Files of the first format (`KVLOG01`, frames without batches) are still read, and appended to in that
/// format; new files are batched.
public final class LogFile {
    public static let magic: [UInt8] = Array("KVLOG02\n".utf8)
    /// The unbatched format of earlier versions.
    public static let legacyMagic: [UInt8] = Array("KVLOG01\n".utf8)
    /// The header of snapshot files, which hold frames without batches (a snapshot is complete or corrupt).
    public static let snapshotMagic: [UInt8] = Array("KVSNAP1\n".utf8)
    public static let frameHeaderBytes = 8
    public static let batchHeaderBytes = 12
    public static let payloadBytesMax = 256 << 20
    static let batchTag: UInt32 = 0x3142_564B  // "KVB1" in little-endian byte order

    public let path: String
    private let fd: Int32
    /// Whether appends are batches (a file of the current format) or bare frames (a legacy file).
    public let batched: Bool
    /// Bytes of a torn final batch (or frame) removed at open (0 when the file ended cleanly).
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
                batched = true
                discardedTailBytes = 0
                sizeBytes = Self.magic.count
                return
            }
            let validBytes = try Self.scanLog(bytes, path: path, onRecord: onRecord)
            batched = bytes.starts(with: Self.magic)
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

    /// Appends `buffer` as one batch. `buffer` starts with `batchHeaderBytes` reserved bytes, filled in here,
    /// followed by frames (so a batch of megabytes is written without being copied). Not durable until `sync()`.
    public func appendBatch(_ buffer: inout [UInt8]) throws {
        precondition(buffer.count > Self.batchHeaderBytes, "a batch holds at least one frame")
        if batched {
            Self.fillBatchHeader(&buffer)
            try FileIO.writeAll(fd, buffer, path: path)
            sizeBytes += buffer.count
        } else {
            try FileIO.writeAll(fd, Array(buffer[Self.batchHeaderBytes...]), path: path)
            sizeBytes += buffer.count - Self.batchHeaderBytes
        }
    }

    /// Appends already-framed bytes as one batch. Not durable until `sync()` returns.
    public func append(framed bytes: [UInt8]) throws {
        var buffer = [UInt8](repeating: 0, count: Self.batchHeaderBytes) + bytes
        try appendBatch(&buffer)
    }

    /// The batch holding `framed` (frames), as `appendBatch` writes it.
    public static func batch(framed: [UInt8]) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: batchHeaderBytes) + framed
        fillBatchHeader(&buffer)
        return buffer
    }

    /// Makes everything appended so far durable.
    public func sync() throws {
        if Failpoints.failing("log-fsync-eio") { throw StorageError.io(operation: "fdatasync", path: path, errno: EIO) }
        try FileIO.fdatasync(fd, path: path)
    }

    /// Writes the header of the batch whose body follows the first `batchHeaderBytes` of `buffer`.
    static func fillBatchHeader(_ buffer: inout [UInt8]) {
        buffer.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: batchTag.littleEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt32(raw.count - batchHeaderBytes).littleEndian, toByteOffset: 4, as: UInt32.self)
            let checksum = CRC32C.checksum(UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                               count: 8))
            raw.storeBytes(of: checksum.littleEndian, toByteOffset: 8, as: UInt32.self)
        }
    }

    /// Walks a log (either format) and returns the length of its intact prefix; see the type's rules.
    public static func scanLog(_ bytes: [UInt8], path: String, onRecord: ([UInt8], Int) throws -> Void) throws -> Int {
        if bytes.starts(with: legacyMagic) {
            return try scanFrames(bytes, path: path, magic: legacyMagic, onRecord: onRecord)
        }
        guard bytes.count >= magic.count, bytes.starts(with: magic) else { throw StorageError.badHeader(path: path) }
        var offset = magic.count
        while offset < bytes.count {
            switch batch(in: bytes, at: offset) {
            case .intact(let end):
                try frames(in: bytes, from: offset + batchHeaderBytes, to: end, path: path, onRecord: onRecord)
                offset = end
            case .damaged(let searchFrom, let at):
                if let later = firstIntactBatch(in: bytes, from: searchFrom) {
                    throw StorageError.corrupt(path: path, offset: at,
                                               detail: "damaged record (intact records follow at byte \(later))")
                }
                return offset
            }
        }
        return offset
    }

    private enum Batch {
        case intact(end: Int)
        /// Damaged at byte `at`; a later intact batch can only start at or after `searchFrom`.
        case damaged(searchFrom: Int, at: Int)
    }

    private static func batch(in bytes: [UInt8], at offset: Int) -> Batch {
        guard let length = batchLength(in: bytes, at: offset) else {
            return .damaged(searchFrom: offset + 1, at: offset)
        }
        let end = offset + batchHeaderBytes + length
        guard end <= bytes.count else { return .damaged(searchFrom: bytes.count, at: offset) }
        var frame = offset + batchHeaderBytes
        while frame < end {
            guard let payload = frameLength(in: bytes, at: frame, end: end) else {
                return .damaged(searchFrom: end, at: frame)
            }
            frame += frameHeaderBytes + payload
        }
        return .intact(end: end)
    }

    /// The body length of an intact batch header at `offset`, or nil.
    private static func batchLength(in bytes: [UInt8], at offset: Int) -> Int? {
        guard bytes.count - offset >= batchHeaderBytes, littleEndianU32(bytes, offset) == batchTag else { return nil }
        let checksum = bytes.withUnsafeBufferPointer { CRC32C.checksum(UnsafeBufferPointer(rebasing: $0[offset..<(offset + 8)])) }
        guard checksum == littleEndianU32(bytes, offset + 8) else { return nil }
        let length = Int(littleEndianU32(bytes, offset + 4))
        return length > 0 ? length : nil
    }

    /// The payload length of an intact frame at `offset` that ends by `end`, or nil.
    private static func frameLength(in bytes: [UInt8], at offset: Int, end: Int) -> Int? {
        guard end - offset >= frameHeaderBytes else { return nil }
        let length = Int(littleEndianU32(bytes, offset))
        guard length > 0, length <= payloadBytesMax, end - offset - frameHeaderBytes >= length else { return nil }
        let start = offset + frameHeaderBytes
        let checksum = bytes.withUnsafeBufferPointer { CRC32C.checksum(UnsafeBufferPointer(rebasing: $0[start..<(start + length)])) }
        return checksum == littleEndianU32(bytes, offset + 4) ? length : nil
    }

    private static func frames(in bytes: [UInt8], from start: Int, to end: Int, path: String,
                               onRecord: ([UInt8], Int) throws -> Void) throws {
        var offset = start
        while offset < end {
            let length = frameLength(in: bytes, at: offset, end: end)!
            try deliver(Array(bytes[(offset + frameHeaderBytes)..<(offset + frameHeaderBytes + length)]), at: offset,
                        path: path, onRecord)
            offset += frameHeaderBytes + length
        }
    }

    private static func firstIntactBatch(in bytes: [UInt8], from start: Int) -> Int? {
        var candidate = start
        while candidate + batchHeaderBytes < bytes.count {
            if case .intact = batch(in: bytes, at: candidate) { return candidate }
            candidate += 1
        }
        return nil
    }

    /// Walks frames without batches (snapshots, legacy logs) and returns the length of the intact prefix. A bad
    /// frame counts as a torn append only if no intact frame starts anywhere after it.
    public static func scanFrames(_ bytes: [UInt8], path: String, magic: [UInt8],
                                  onRecord: ([UInt8], Int) throws -> Void) throws -> Int {
        guard bytes.count >= magic.count, bytes.starts(with: magic) else { throw StorageError.badHeader(path: path) }
        var offset = magic.count
        while offset < bytes.count {
            guard let length = frameLength(in: bytes, at: offset, end: bytes.count) else {
                var candidate = offset + 1
                while candidate + frameHeaderBytes < bytes.count {
                    if frameLength(in: bytes, at: candidate, end: bytes.count) != nil {
                        throw StorageError.corrupt(path: path, offset: offset,
                                                   detail: "damaged record (intact records follow at byte \(candidate))")
                    }
                    candidate += 1
                }
                return offset
            }
            try deliver(Array(bytes[(offset + frameHeaderBytes)..<(offset + frameHeaderBytes + length)]), at: offset,
                        path: path, onRecord)
            offset += frameHeaderBytes + length
        }
        return offset
    }

    private static func deliver(_ payload: [UInt8], at offset: Int, path: String,
                                _ onRecord: ([UInt8], Int) throws -> Void) throws {
        do {
            try onRecord(payload, offset)
        } catch let error as KVError {
            throw StorageError.corrupt(path: path, offset: offset, detail: error.description)
        }
    }

    private static func littleEndianU32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }
}
