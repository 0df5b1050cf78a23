import Foundation
import KVCommon

/// A blocking wire-protocol connection to one replica, owned by one FastCGI worker thread and used for reads
/// only (`get`, `list`). The worker writes its request and sleeps in `poll` until the reply line arrives: one
/// wake-up per read, where going through the event loop costs a hand-off to the loop and one back.
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

    init(host: String, port: Int, scratch: ReadScratch) {
        self.host = host
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
            if fd < 0, let failure = connect(timeoutMs: min(connectTimeoutMs, timeoutMs)) { return .failure(failure) }
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

    private func exchange(_ request: [UInt8], deadline: UInt64, maxLineBytes: Int) -> Result<[UInt8], LinkFailure> {
        if let failure = send(request, deadline: deadline) { return .failure(failure) }
        return receiveLine(deadline: deadline, maxLineBytes: maxLineBytes)
    }

    private func disconnect() {
        if fd >= 0 { close(fd) }
        fd = -1
        buffer.removeAll()
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
                if let failure = wait(for: POLLOUT, deadline: deadline) { return failure }
            } else {
                return LinkFailure(reason: "\(Self.lost) (\(address))")
            }
        }
        return nil
    }

    private func receiveLine(deadline: UInt64, maxLineBytes: Int) -> Result<[UInt8], LinkFailure> {
        var scanned = 0
        // The reply cannot be there yet: sleep until it is rather than try a read that would fail.
        if let failure = wait(for: POLLIN, deadline: deadline) { return .failure(failure) }
        while true {
            let found = buffer.withUnsafeBufferPointer { all -> Int? in
                guard scanned < all.count, let hit = memchr(all.baseAddress! + scanned, 0x0A, all.count - scanned) else {
                    return nil
                }
                return all.baseAddress!.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            }
            if let newline = found {
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
                if let failure = wait(for: POLLIN, deadline: deadline) { return .failure(failure) }
            } else {
                return .failure(LinkFailure(reason: "\(Self.lost) (\(address))"))
            }
        }
    }

    private func wait(for events: Int32, deadline: UInt64) -> LinkFailure? {
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { break }
            var pfd = pollfd(fd: fd, events: Int16(events), revents: 0)
            let ready = poll(&pfd, 1, Int32(max(1, (deadline - now) / 1_000_000)))
            if ready > 0 { return nil }
            if ready < 0 && errno != EINTR { return LinkFailure(reason: "\(Self.lost) (\(address))") }
        }
        return LinkFailure(reason: "no answer within \(timeoutMs) ms (\(address))")
    }
}

/// A worker thread's read buffer, shared by its connections (one thread uses them, one at a time).
final class ReadScratch {
    var bytes = [UInt8](repeating: 0, count: 64 << 10)
}
