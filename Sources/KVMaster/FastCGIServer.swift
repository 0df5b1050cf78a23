import CFCGI
import Foundation
import KVCommon
import KVRuntime
import Logging
import Synchronization

/// The only file that touches libfcgi. A fixed pool of worker threads, each with its own `FCGX_Request`,
/// accepts on one listening socket: the one systemd passed (socket activation, fd 3) or one it opens itself.
///
/// With nginx `fastcgi_keep_conn on`, a thread serves one nginx connection until nginx closes it, so the pool
/// must be at least as large as the number of upstream connections nginx may hold open.
///
/// A request that waits (a blocking query, a watch stream) is parked: the worker hands its `FCGX_Request`, which
/// lives on the heap, to a `ParkedRequest` and accepts the next request with a fresh one, so a waiting client
/// holds a connection and some memory but no thread. Whoever has the event finishes it later, from any thread.
final class FastCGIServer {
    /// What a handler does with a request: answer it now, or park it (`park` receives it, on the worker thread).
    enum Reply {
        case response(HTTPResponse)
        case park((ParkedRequest) -> Void)
    }

    typealias Handler = (HTTPRequest) -> Reply

    private let listenFD: Int32
    private let logger: Logger
    private let bodyLimit: SharedLimit
    let listenDescription: String
    private let warnedKeepConnection = Atomic<Bool>(false)

    init(listen: ClusterConfig.ListenAddress, bodyLimit: SharedLimit, logger: Logger) throws {
        self.logger = logger
        self.bodyLimit = bodyLimit
        guard FCGX_Init() == 0 else { throw MasterError.fastCGI("FCGX_Init failed") }
        let environment = ProcessInfo.processInfo.environment
        if let pid = environment["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
           let count = environment["LISTEN_FDS"].flatMap(Int.init), count >= 1 {
            listenFD = 3
            listenDescription = "systemd socket (fd 3)"
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
            return
        }
        let fd = try FastCGIListener.open(listen)
        // Owner and group only: nginx connects as a member of the socket's group (put its user in the master's
        // group, or run both as one user); any other local user would otherwise reach the master past nginx.
        if case .unix(let path) = listen { chmod(path, 0o660) }
        listenFD = fd
        listenDescription = "\(listen)"
    }

    /// Starts `workers` threads that serve requests with `handler` until the process exits.
    func start(workers: Int, handler: @escaping Handler) {
        for index in 0..<workers {
            let thread = Thread { [self] in self.serve(handler) }
            thread.name = "fcgi-\(index)"
            thread.stackSize = 512 << 10
            thread.start()
        }
    }

    private func serve(_ handler: Handler) {
        var request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
        guard FCGX_InitRequest(request, listenFD, 0) == 0 else {
            logger.critical("FCGX_InitRequest failed")
            return
        }
        while FCGX_Accept_r(request) >= 0 {
            switch handler(read(request)) {
            case .response(let response):
                ParkedRequest.put(response.cgiBytes(), request)
                FCGX_Finish_r(request)
            case .park(let park):
                if request.pointee.keepConnection != 0 && !warnedKeepConnection.exchange(true, ordering: .relaxed) {
                    // nginx would put the connection back in its keepalive cache when the answer ends, and could
                    // send the next request on it before it sees the close: a 502 for that request.
                    let warning = "a waiting request (\(Self.param("REQUEST_URI", request) ?? "?")) came on a kept connection; its connection "
                        + "is closed when it is answered: set fastcgi_keep_conn off where requests wait (/watch, "
                        + "?index=), as nginx/kv-locations.conf does"
                    logger.warning("\(warning)")
                }
                // The parked request owns the struct (and its connection) from here; the next accept gets a new one.
                let parked = ParkedRequest(taking: request)
                request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
                guard FCGX_InitRequest(request, listenFD, 0) == 0 else {
                    logger.critical("FCGX_InitRequest failed")
                    return
                }
                park(parked)
            }
        }
        logger.error("FCGX_Accept_r failed; worker thread stops")
    }

    private static func param(_ name: String, _ request: UnsafeMutablePointer<FCGX_Request>) -> String? {
        FCGX_GetParam(name, request.pointee.envp).map { String(cString: $0) }
    }

    private func read(_ request: UnsafeMutablePointer<FCGX_Request>) -> HTTPRequest {
        func param(_ name: String) -> String? { Self.param(name, request) }
        var headers: [String: String] = [:]
        for name in ["CONTENT_TYPE", "HTTP_ACCEPT", "HTTP_IF_MATCH", "HTTP_AUTHORIZATION", "HTTP_LAST_EVENT_ID"] {
            if let value = param(name) { headers[name] = value }
        }
        let length = param("CONTENT_LENGTH").flatMap(Int.init) ?? 0
        var body: [UInt8] = []
        var tooLarge = false
        if length > 0 {
            tooLarge = length > bodyLimit.value
            var remaining = length
            var chunk = [CChar](repeating: 0, count: min(length, 64 << 10))
            while remaining > 0 {
                let count = FCGX_GetStr(&chunk, Int32(min(chunk.count, remaining)), request.pointee.in)
                if count <= 0 { break }
                if !tooLarge {
                    chunk.withUnsafeBytes { body.append(contentsOf: $0.prefix(Int(count))) }
                }
                remaining -= Int(count)
            }
        }
        return HTTPRequest(method: param("REQUEST_METHOD") ?? "GET", uri: param("REQUEST_URI") ?? "/",
                           headers: headers, body: tooLarge ? [] : body, bodyTooLarge: tooLarge)
    }
}

/// A request whose answer comes later (see `FastCGIServer`): written to and finished from any thread, by one
/// thread at a time (its owner serializes). Its connection is closed when it is finished, since no worker will
/// accept on it again (nginx then opens a new one for its next request).
final class ParkedRequest: @unchecked Sendable {
    private let request: UnsafeMutablePointer<FCGX_Request>
    private var finished = false

    /// `sendTimeoutSeconds` bounds each write, so a reader that stopped reading fails the write rather than
    /// holding the thread that writes.
    init(taking request: UnsafeMutablePointer<FCGX_Request>, sendTimeoutSeconds: Int = 2) {
        self.request = request
        var timeout = timeval(tv_sec: sendTimeoutSeconds, tv_usec: 0)
        setsockopt(request.pointee.ipcFd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes `bytes` and flushes them to nginx; false once the connection failed.
    func send(_ bytes: [UInt8]) -> Bool {
        guard !finished else { return false }
        guard Self.put(bytes, request) else { return false }
        return FCGX_FFlush(request.pointee.out) == 0
    }

    /// Writes `bytes` (if any), ends the request and closes its connection.
    func finish(_ bytes: [UInt8] = []) {
        guard !finished else { return }
        finished = true
        if !bytes.isEmpty { _ = Self.put(bytes, request) }
        request.pointee.keepConnection = 0
        FCGX_Finish_r(request)
        request.deallocate()
    }

    @discardableResult
    static func put(_ bytes: [UInt8], _ request: UnsafeMutablePointer<FCGX_Request>) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                FCGX_PutStr(chars.baseAddress, Int32(chars.count), request.pointee.out) == Int32(chars.count)
            }
        }
    }
}
