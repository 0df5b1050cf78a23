import Foundation
import KVCommon
import KVRuntime

/// The master's FastCGI listening socket when systemd does not pass one. Opened here rather than with
/// libfcgi's `FCGX_OpenSocket`, which on a failed bind prints `bind/listen` and exits the process with the errno
/// as its status: a taken port must be an error that names `master.listen` and says what to do (exit 1).
enum FastCGIListener {
    static func open(_ listen: ClusterConfig.ListenAddress, backlog: Int32 = 1024) throws -> Int32 {
        switch listen {
        case .unix(let path):
            // A socket file left by a master that died; the decision log's lock (taken first) rules out a live one.
            unlink(path)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
                throw StorageError.cannotListen(address: path, setting: "master.listen", reason: "path too long", errno: nil)
            }
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
            return try bound(AF_UNIX, description: path, backlog: backlog) { fd in
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
            }
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
            var found: UnsafeMutablePointer<addrinfo>?
            let description = "\(host):\(port)"
            let status = getaddrinfo(host, String(port), &hints, &found)
            guard status == 0, let info = found else {
                throw StorageError.cannotListen(address: description, setting: "master.listen",
                                                reason: String(cString: gai_strerror(status)), errno: nil)
            }
            defer { freeaddrinfo(found) }
            return try bound(info.pointee.ai_family, description: description, backlog: backlog) { fd in
                var on: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
                return bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            }
        }
    }

    private static func bound(_ family: Int32, description: String, backlog: Int32,
                              bindTo: (Int32) -> Int32) throws -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else {
            throw StorageError.cannotListen(address: description, setting: "master.listen",
                                            reason: String(cString: strerror(errno)), errno: errno)
        }
        guard bindTo(fd) == 0, listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            throw StorageError.cannotListen(address: description, setting: "master.listen",
                                            reason: String(cString: strerror(code)), errno: code)
        }
        return fd
    }
}
