import KVCommon
import NIOCore

/// Splits the inbound byte stream into `\n`-terminated lines (the terminator stripped). A line longer than
/// its limit throws `LineTooLong`; the handler after it decides what to tell the peer before closing.
/// Used by both ends of the wire protocol.
public final class LineFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public struct LineTooLong: Error {}

    private let limit: SharedLimit
    private var scanned = 0

    /// `limit` is read at every decode, so a reload that changes it holds for lines still to come.
    public init(limit: SharedLimit) { self.limit = limit }

    public convenience init(maxLineBytes: Int) { self.init(limit: SharedLimit(maxLineBytes)) }

    public func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let maxLineBytes = limit.value
        let found = buffer.withUnsafeReadableBytes { ByteScan.firstIndex(of: UInt8(ascii: "\n"), in: $0, from: scanned) }
        guard let length = found else {
            scanned = buffer.readableBytes
            if buffer.readableBytes > maxLineBytes { throw LineTooLong() }
            return .needMoreData
        }
        scanned = 0
        // Over the limit whether its newline came in the same read or a later one.
        if length > maxLineBytes { throw LineTooLong() }
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}
