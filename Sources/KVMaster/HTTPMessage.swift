import KVCommon

/// An HTTP request as the master sees it after FastCGI: method, raw URI, selected headers, body.
struct HTTPRequest {
    var method: String
    /// The request URI exactly as the client sent it (still percent-encoded), e.g. `/kv/a%2Fb?x=1`.
    var uri: String
    var headers: [String: String]
    var body: [UInt8]
    /// Set when the body was larger than the master accepts; the body is then empty.
    var bodyTooLarge = false
    /// Query parameters, names and values percent-decoded (RFC 3986: `+` is not special); nil when an escape
    /// in the query is not `%` and two hex digits (the router answers 400 rather than guess).
    let queryBytes: [String: [UInt8]]?

    init(method: String, uri: String, headers: [String: String], body: [UInt8], bodyTooLarge: Bool = false) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.bodyTooLarge = bodyTooLarge
        queryBytes = Self.parseQuery(uri)
    }

    /// The path part of `uri`, still percent-encoded.
    var rawPath: Substring {
        uri.firstIndex(of: "?").map { uri[..<$0] } ?? Substring(uri)
    }

    /// A query parameter as text (empty when the query is malformed: the router refuses such requests first).
    func query(_ name: String) -> String? {
        queryBytes?[name].map { String(decoding: $0, as: UTF8.self) }
    }

    private static func parseQuery(_ uri: String) -> [String: [UInt8]]? {
        guard let mark = uri.firstIndex(of: "?") else { return [:] }
        var result: [String: [UInt8]] = [:]
        for pair in uri.utf8[uri.utf8.index(after: mark)...].split(separator: UInt8(ascii: "&")) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard case .success(let name) = PercentCoding.decode(ArraySlice(parts[0])) else { return nil }
            let value = parts.count > 1 ? PercentCoding.decode(ArraySlice(parts[1])) : .success([])
            guard case .success(let decoded) = value else { return nil }
            result[String(decoding: name, as: UTF8.self)] = decoded
        }
        return result
    }
}

/// An HTTP response: status, extra headers, body (JSON unless a header says otherwise).
struct HTTPResponse {
    var status: Int
    var headers: [(String, String)] = []
    var body: [UInt8]

    static let reasons: [Int: String] = [
        200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
        412: "Precondition Failed", 413: "Content Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
    ]

    /// The CGI response head (`Status:` line and headers) followed by the body, written straight into one
    /// array, with no intermediate strings: this runs for every response.
    func cgiBytes() -> [UInt8] {
        let json = !headers.contains { $0.0 == "Content-Type" }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(96 + headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 } + body.count)
        func add(_ text: String) { bytes.append(contentsOf: text.utf8) }
        func add(_ number: Int) {
            let first = bytes.count
            var rest = number
            repeat {
                bytes.append(UInt8(ascii: "0") + UInt8(rest % 10))
                rest /= 10
            } while rest > 0
            bytes[first...].reverse()
        }
        add("Status: ")
        add(status)
        add(" ")
        add(Self.reasons[status] ?? "Status")
        add("\r\n")
        if json { add("Content-Type: application/json\r\n") }
        add("Content-Length: ")
        add(body.count + (json ? 1 : 0))
        add("\r\n")
        for (name, value) in headers {
            add(name)
            add(": ")
            add(value)
            add("\r\n")
        }
        add("\r\n")
        bytes.append(contentsOf: body)
        if json { bytes.append(UInt8(ascii: "\n")) }
        return bytes
    }
}
