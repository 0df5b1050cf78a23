/// Every error KVCommon reports. Each message names the thing that is wrong and, where it helps, the fix.
public enum KVError: Error, Equatable, CustomStringConvertible {
    /// A wire line did not have the four fields `seq;cmd;key;value`.
    case wireFieldCount(found: Int)
    /// The command field is not one of the known commands.
    case wireUnknownCommand(String)
    /// The seq field is not a decimal number from 1 to 2^64-1.
    case wireBadSeq(String)
    /// The command needs a transaction seq (`put`, `del`, `com`, `abrt`).
    case wireSeqRequired(WireCommand)
    /// The command must not carry a seq (`get`, `stat`).
    case wireSeqNotAllowed(WireCommand)
    /// The command needs a non-empty key.
    case wireKeyRequired(WireCommand)
    /// The command takes no such field (`key` or `value`), but one was given.
    case wireFieldNotAllowed(WireCommand, field: String)
    /// A `%` in a field is not followed by two hex digits.
    case wireBadEscape(field: String, offset: Int)
    /// The line is longer than the configured limit.
    case wireLineTooLong(limit: Int)
    /// A reply line is not the JSON object the protocol promises.
    case wireBadReply(String)
    /// Bytes that should be JSON (RFC 8259) are not.
    case jsonMalformed(String)
    /// A transaction (`POST /txn`, or a `txn` prepare) is not well formed.
    case txnMalformed(String)
    /// cluster.yaml (or another config file) is wrong at this place.
    case config(file: String, line: Int, column: Int, message: String)
    /// A binary record failed to decode.
    case recordMalformed(String)
    /// A cluster or role key (its file's content) cannot be used.
    case keyInvalid(String)
    /// A link's handshake failed: the peer does not hold the key, or broke the protocol.
    case authFailed(String)

    public var description: String {
        switch self {
        case .wireFieldCount(let found):
            return "wire: expected 4 fields 'seq;cmd;key;value', found \(found)"
        case .wireUnknownCommand(let command):
            let known = WireCommand.allCases.map(\.rawValue).joined(separator: ", ")
            return "wire: unknown command '\(command)' (known: \(known))"
        case .wireBadSeq(let text):
            return "wire: seq '\(text)' is not a decimal number from 1 to 18446744073709551615"
        case .wireSeqRequired(let command):
            return "wire: '\(command.rawValue)' needs a transaction seq in the first field"
        case .wireSeqNotAllowed(let command):
            return "wire: '\(command.rawValue)' takes no seq; leave the first field empty"
        case .wireKeyRequired(let command):
            return "wire: '\(command.rawValue)' needs a non-empty key"
        case .wireFieldNotAllowed(let command, let field):
            return "wire: '\(command.rawValue)' takes no \(field); leave that field empty"
        case .wireBadEscape(let field, let offset):
            return "wire: malformed percent-escape in \(field) at byte \(offset) (use %25 for a literal %)"
        case .wireLineTooLong(let limit):
            return "wire: line longer than \(limit) bytes"
        case .wireBadReply(let detail):
            return "wire: malformed reply: \(detail)"
        case .jsonMalformed(let detail):
            return "JSON: \(detail)"
        case .txnMalformed(let detail):
            return detail
        case .config(let file, let line, let column, let message):
            return "config: \(file):\(line):\(column): \(message)"
        case .recordMalformed(let detail):
            return "record: \(detail)"
        case .keyInvalid(let detail):
            return "key: \(detail)"
        case .authFailed(let detail):
            return "authentication failed: \(detail)"
        }
    }
}
