import Foundation
import KVCommon

/// A blocking wire-protocol connection to one replica, owned by one FastCGI worker thread and used for reads
/// only (`get`, `list`). The worker writes its request and sleeps in a blocking `read` until the reply line
/// arrives: one wake-up per read, where going through the event loop costs a hand-off to the loop and one back.
/// Time-outs are the socket's own (`SO_RCVTIMEO`, `SO_SNDTIMEO`), so a read costs a `send` and a `read` and
/// no `poll`.
///
/// Reads stay linearizable on a connection of their own: a write is acknowledged only once every replica
/// holds it prepared, and a replica holds a read of a prepared key until the decision arrives, whichever
/// connection the read and the `com` travel on.
///
/// A time-out or any error closes the connection (a late reply would be taken for the next request's); the
/// next call opens a new one.
final class DirectReadConnection {
    let address: String
    private let host: String
    private let port: Int
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    /// Where `read` puts bytes: one per worker thread, shared by that thread's connections.
    private let scratch: ReadScratch
    private var timeoutMs = 0
    /// What SO_RCVTIMEO/SO_SNDTIMEO are set to now (-1: unknown, set them before the next exchange).
    private var socketTimeoutMs = -1

    /// A fresh handshake for each new connection (nil: the replica port is not authenticated).
    private let handshake: (() -> HandshakeInitiator)?

    init(host: String, port: Int, scratch: ReadScratch, handshake: (() -> HandshakeInitiator)?) {
        self.host = host
        self.handshake = handshake
        self.port = port
        self.scratch = scratch
        address = "\(host):\(port)"
    }

    deinit { disconnect() }

    /// Sends `request` and returns the reply line (without its `\n`), within `timeoutMs` in all.
    func call(_ request: [UInt8], timeoutMs: Int, connectTimeoutMs: Int, maxLineBytes: Int) -> Result<[UInt8], LinkFailure> {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMs) * 1_000_000
        self.timeoutMs = timeoutMs
        // A kept connection the replica has closed since (it restarted) fails at once: reads are idempotent,
        // so that one failure is retried on a new connection.
        let reused = fd >= 0
        for attempt in 0..<2 {
            if fd < 0 {
                if let failure = connect(timeoutMs: min(connectTimeoutMs, timeoutMs)) { return .failure(failure) }
                setSocketTimeouts(timeoutMs)
                if let failure = authenticate(deadline: deadline) {
                    disconnect()
                    return .failure(failure)
                }
            }
            if socketTimeoutMs != timeoutMs { setSocketTimeouts(timeoutMs) }
            let result = exchange(request, deadline: deadline, maxLineBytes: maxLineBytes)
            if case .failure(let failure) = result {
                disconnect()
                if attempt == 0 && reused && failure.reason.hasPrefix(Self.lost) { continue }
            }
            return result
        }
        return .failure(LinkFailure(reason: "\(Self.lost) (\(address))"))
    }

    private static let lost = "connection lost"

    /// The link handshake on a new connection, before its first request (see `LinkHandshake`).
    private func authenticate(deadline: UInt64) -> LinkFailure? {
        guard let handshake else { return nil }
        var initiator = handshake()
        var line = initiator.hello
        while true {
            if let failure = send(line, deadline: deadline) { return failure }
            let reply: [UInt8]
            switch receiveLine(deadline: deadline, maxLineBytes: 4096) {
            case .success(let received): reply = received
            case .failure(let failure): return failure
            }
            switch initiator.receive(reply) {
            case .success(.send(let next)): line = next
            case .success(.authenticated): return nil
            case .failure(let error): return LinkFailure(reason: "\(error) (\(address))")
            }
        }
    }

    private func exchange(_ request: [UInt8], deadline: UInt64, maxLineBytes: Int) -> Result<[UInt8], LinkFailure> {
        if let failure = send(request, deadline: deadline) { return .failure(failure) }
        return receiveLine(deadline: deadline, maxLineBytes: maxLineBytes)
    }

    private func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
        socketTimeoutMs = -1
        buffer.removeAll()
    }

    /// Never 0, which would mean no limit at all.
    private func setSocketTimeouts(_ requested: Int) {
        let milliseconds = max(1, requested)
        var limit = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        let size = socklen_t(MemoryLayout<timeval>.size)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, size)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, size)
        socketTimeoutMs = milliseconds
    }

    private func connect(timeoutMs: Int) -> LinkFailure? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
            return LinkFailure(reason: "cannot resolve host (\(address))")
        }
        defer { freeaddrinfo(list) }
        var reason = "cannot connect (\(address))"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let socketFD = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard socketFD >= 0 else { continue }
            let flags = fcntl(socketFD, F_GETFL)
            _ = fcntl(socketFD, F_SETFL, flags | O_NONBLOCK)
            var result = Glibc.connect(socketFD, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if result != 0 && errno == EINPROGRESS {
                var pfd = pollfd(fd: socketFD, events: Int16(POLLOUT), revents: 0)
                if poll(&pfd, 1, Int32(timeoutMs)) == 1 {
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(socketFD, SOL_SOCKET, SO_ERROR, &error, &length)
                    result = error == 0 ? 0 : -1
                    errno = error
                } else {
                    errno = ETIMEDOUT
                }
            }
            if result == 0 {
                _ = fcntl(socketFD, F_SETFL, flags)
                var one: Int32 = 1
                setsockopt(socketFD, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                fd = socketFD
                return nil
            }
            reason = errno == ECONNREFUSED ? "connection refused (\(address))"
                : errno == ETIMEDOUT ? "connect timed out (\(address))"
                : "cannot connect (\(address)): \(String(cString: strerror(errno)))"
            close(socketFD)
        }
        return LinkFailure(reason: reason)
    }

    private func send(_ bytes: [UInt8], deadline: UInt64) -> LinkFailure? {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else if written < 0 && errno == EAGAIN {
                if let failure = waitMore(deadline: deadline) { return failure }
            } else {
                return LinkFailure(reason: "\(Self.lost) (\(address))")
            }
        }
        return nil
    }

    private func receiveLine(deadline: UInt64, maxLineBytes: Int) -> Result<[UInt8], LinkFailure> {
        var scanned = 0
        while true {
            if let newline = buffer.withUnsafeBytes({ ByteScan.firstIndex(of: 0x0A, in: $0, from: scanned) }) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return .success(line)
            }
            scanned = buffer.count
            guard buffer.count <= maxLineBytes else {
                return .failure(LinkFailure(reason: "reply longer than \(maxLineBytes) bytes (\(address))"))
            }
            let count = scratch.bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count > 0 {
                buffer.append(contentsOf: scratch.bytes[..<count])
            } else if count < 0 && errno == EINTR {
                continue
            } else if count < 0 && errno == EAGAIN {
                if let failure = waitMore(deadline: deadline) { return .failure(failure) }
            } else {
                return .failure(LinkFailure(reason: "\(Self.lost) (\(address))"))
            }
        }
    }

    /// A blocking call timed out on the socket's limit: fails once the call's deadline has passed, otherwise
    /// narrows the limit to the time left (the next exchange sets it back).
    private func waitMore(deadline: UInt64) -> LinkFailure? {
        let now = DispatchTime.now().uptimeNanoseconds
        guard now < deadline else { return LinkFailure(reason: "no answer within \(timeoutMs) ms (\(address))") }
        setSocketTimeouts(max(1, Int((deadline - now) / 1_000_000)))
        return nil
    }
}

/// A worker thread's read buffer, shared by its connections (one thread uses them, one at a time).
final class ReadScratch {
    var bytes = [UInt8](repeating: 0, count: 64 << 10)
}
