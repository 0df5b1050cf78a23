/// One request line of the replica wire protocol: `seq;cmd;key;value\n`.
///
/// Always four fields. The one exception is the user's read form `;get;key`, whose empty value field may be
/// left out. Key and value are percent-encoded (see `PercentCoding`). Validation is per command: `get` and
/// `stat` take no seq; `put`, `del`, `com` and `abrt` need one; only `put` carries a value.
public struct WireRequest: Equatable, Sendable {
    public var seq: UInt64?
    public var command: WireCommand
    public var key: [UInt8]
    public var value: [UInt8]

    public init(seq: UInt64?, command: WireCommand, key: [UInt8] = [], value: [UInt8] = []) {
        self.seq = seq
        self.command = command
        self.key = key
        self.value = value
    }

    public static func get(_ key: [UInt8]) -> WireRequest { WireRequest(seq: nil, command: .get, key: key) }
    public static func put(_ seq: UInt64, _ key: [UInt8], _ value: [UInt8]) -> WireRequest {
        WireRequest(seq: seq, command: .put, key: key, value: value)
    }
    public static func del(_ seq: UInt64, _ key: [UInt8]) -> WireRequest {
        WireRequest(seq: seq, command: .del, key: key)
    }
    public static func com(_ seq: UInt64) -> WireRequest { WireRequest(seq: seq, command: .com) }
    public static func abrt(_ seq: UInt64) -> WireRequest { WireRequest(seq: seq, command: .abrt) }
    public static let stat = WireRequest(seq: nil, command: .stat)

    /// The line for this request, including the trailing `\n`.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(key.count + value.count + 32)
        if let seq { out.append(contentsOf: String(seq).utf8) }
        out.append(UInt8(ascii: ";"))
        out.append(contentsOf: command.rawValue.utf8)
        out.append(UInt8(ascii: ";"))
        PercentCoding.encode(key, into: &out)
        out.append(UInt8(ascii: ";"))
        PercentCoding.encode(value, into: &out)
        out.append(UInt8(ascii: "\n"))
        return out
    }

    /// The `;`-separated fields of `line` (empty ones kept), found with `memchr`: a value of megabytes is one
    /// field, and a generic `split` walks it a byte at a time through a closure.
    static func splitFields(_ line: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var fields: [ArraySlice<UInt8>] = []
        fields.reserveCapacity(4)
        var start = line.startIndex
        line.withUnsafeBytes { buffer in
            var offset = 0
            while let position = ByteScan.firstIndex(of: UInt8(ascii: ";"), in: buffer, from: offset) {
                fields.append(line[start..<(line.startIndex + position)])
                start = line.startIndex + position + 1
                offset = position + 1
            }
        }
        fields.append(line[start..<line.endIndex])
        return fields
    }

    /// Parses one line. A trailing `\n` or `\r\n` is ignored; `maxLineBytes` bounds the line.
    public static func parse(_ line: [UInt8], maxLineBytes: Int = 1 << 22) -> Result<WireRequest, KVError> {
        var bytes = line[...]
        if bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
        if bytes.last == 0x0D { bytes = bytes.dropLast() }
        guard bytes.count <= maxLineBytes else { return .failure(.wireLineTooLong(limit: maxLineBytes)) }
        let fields = splitFields(bytes)
        let commandText = fields.count > 1 ? String(decoding: fields[1], as: UTF8.self) : ""
        let isShortGet = fields.count == 3 && commandText == WireCommand.get.rawValue
        guard fields.count == 4 || isShortGet else { return .failure(.wireFieldCount(found: fields.count)) }
        guard let command = WireCommand(rawValue: commandText) else {
            return .failure(.wireUnknownCommand(commandText))
        }
        var seq: UInt64?
        if fields[0].isEmpty {
            if command.needsSeq { return .failure(.wireSeqRequired(command)) }
        } else {
            guard command.needsSeq || command.seqOptional else { return .failure(.wireSeqNotAllowed(command)) }
            let text = String(decoding: fields[0], as: UTF8.self)
            guard fields[0].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let number = UInt64(text), number > 0
            else { return .failure(.wireBadSeq(text)) }
            seq = number
        }
        let key: [UInt8]
        switch PercentCoding.decode(fields[2]) {
        case .success(let decoded): key = decoded
        case .failure(let error): return .failure(.wireBadEscape(field: "key", offset: error.offset))
        }
        var value: [UInt8] = []
        if fields.count == 4 {
            switch PercentCoding.decode(fields[3]) {
            case .success(let decoded): value = decoded
            case .failure(let error): return .failure(.wireBadEscape(field: "value", offset: error.offset))
            }
        }
        if command.needsKey && key.isEmpty { return .failure(.wireKeyRequired(command)) }
        if !command.needsKey && !command.keyOptional && !key.isEmpty {
            return .failure(.wireFieldNotAllowed(command, field: "key"))
        }
        if !command.takesValue && !value.isEmpty { return .failure(.wireFieldNotAllowed(command, field: "value")) }
        return .success(WireRequest(seq: seq, command: command, key: key, value: value))
    }
}
