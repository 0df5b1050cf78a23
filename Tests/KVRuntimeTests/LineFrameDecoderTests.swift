import KVRuntime
import NIOCore
import NIOEmbedded
import XCTest

final class LineFrameDecoderTests: XCTestCase {
    private func channel(maxLineBytes: Int = 64) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLineBytes: maxLineBytes)))
        return channel
    }

    private func lines(_ channel: EmbeddedChannel) throws -> [String] {
        var result: [String] = []
        while let line = try channel.readInbound(as: ByteBuffer.self) { result.append(String(buffer: line)) }
        return result
    }

    /// Lines split across reads at every point, several in one read, and empty ones, come out whole and in order.
    func testLinesAcrossAndWithinReads() throws {
        let stream = "first line\n\nsecond;with;fields\nlast\n"
        for cut in 0...stream.utf8.count {
            let channel = try channel()
            let bytes = Array(stream.utf8)
            try channel.writeInbound(ByteBuffer(bytes: bytes[..<cut]))
            try channel.writeInbound(ByteBuffer(bytes: bytes[cut...]))
            XCTAssertEqual(try lines(channel), ["first line", "", "second;with;fields", "last"], "cut at \(cut)")
            _ = try channel.finish()
        }
    }

    func testAPartialLineWaitsForItsNewline() throws {
        let channel = try channel()
        try channel.writeInbound(ByteBuffer(string: "no newline yet"))
        XCTAssertEqual(try lines(channel), [])
        try channel.writeInbound(ByteBuffer(string: " and now\n"))
        XCTAssertEqual(try lines(channel), ["no newline yet and now"])
        _ = try channel.finish()
    }

    func testALineLongerThanTheLimitIsAnError() throws {
        let channel = try channel(maxLineBytes: 8)
        XCTAssertThrowsError(try channel.writeInbound(ByteBuffer(string: String(repeating: "x", count: 20)))) { error in
            XCTAssertTrue(error is LineFrameDecoder.LineTooLong, "\(error)")
        }
    }

    /// The same line arriving whole, newline included, in one read is just as much over the limit: what a peer
    /// is told (one error, then the close) must not depend on how TCP cut its bytes. Before, such a line was
    /// passed on, answered with an error and the connection kept open.
    func testAWholeLineLongerThanTheLimitInOneReadIsAnErrorToo() throws {
        for cut in [0, 5, 8] {
            let channel = try channel(maxLineBytes: 8)
            let bytes = Array("ok\n".utf8) + Array(repeating: UInt8(ascii: "x"), count: 12) + Array("\n".utf8)
            try channel.writeInbound(ByteBuffer(bytes: bytes[..<(3 + cut)]))
            XCTAssertThrowsError(try channel.writeInbound(ByteBuffer(bytes: bytes[(3 + cut)...])), "cut at \(cut)") {
                XCTAssertTrue($0 is LineFrameDecoder.LineTooLong, "\($0)")
            }
            XCTAssertEqual(try lines(channel), ["ok"], "the line before it is delivered")
        }
        let atLimit = try channel(maxLineBytes: 8)
        try atLimit.writeInbound(ByteBuffer(string: "12345678\n"))
        XCTAssertEqual(try lines(atLimit), ["12345678"], "a line at the limit is fine")
    }
}
