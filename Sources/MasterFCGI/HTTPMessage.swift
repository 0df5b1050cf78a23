/// An HTTP request as the master sees it after FastCGI: method, raw URI, selected headers, body.
struct HTTPRequest {
    var method: String
    /// The request URI exactly as the client sent it (still percent-encoded), e.g. `/kv/a%2Fb?x=1`.
    var uri: String
    var headers: [String: String]
    var body: [UInt8]
    /// Set when the body was larger than the master accepts; the body is then empty.
    var bodyTooLarge = false

    /// The path part of `uri`, still percent-encoded.
    var rawPath: Substring {
        uri.firstIndex(of: "?").map { uri[..<$0] } ?? Substring(uri)
    }

    /// Query parameters (names and values percent-decoded; malformed ones are skipped).
    var query: [String: String] {
        guard let mark = uri.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = URLPercent.decode(parts[0]) else { continue }
            let value = parts.count > 1 ? URLPercent.decode(parts[1]) : []
            if let value { result[String(decoding: name, as: UTF8.self)] = String(decoding: value, as: UTF8.self) }
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
    /// array (building the head as strings first cost about seven allocations per response).
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

/// RFC 3986 percent-decoding for URL paths and query strings (`+` is not special).
enum URLPercent {
    static func decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%") {
                guard index + 2 < bytes.count,
                      let value = UInt8(String(decoding: bytes[(index + 1)...(index + 2)], as: UTF8.self), radix: 16)
                else { return nil }
                out.append(value)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return out
    }
}
