/// A parsed JSON value. Numbers keep their text so 64-bit integers survive exactly.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let flag) = self { return flag }
        return nil
    }

    public var uint64Value: UInt64? {
        if case .number(let text) = self { return UInt64(text) }
        return nil
    }

    public var doubleValue: Double? {
        if case .number(let text) = self { return Double(text) }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var isNull: Bool { self == .null }

    /// Parses a complete JSON text (RFC 8259). Nesting is limited to `maxDepth`.
    public static func parse(_ text: [UInt8], maxDepth: Int = 64) -> Result<JSONValue, KVError> {
        var parser = JSONParser(text, maxDepth: maxDepth)
        return parser.parseDocument()
    }

    /// Parses a JSON text, calling `visit` for each member of the top-level object in order, without building
    /// the object's dictionary (a valid text that is not an object has no members). Returns the first error:
    /// malformed JSON, or what `visit` threw.
    public static func parseMembers(_ text: [UInt8], maxDepth: Int = 64,
                                    _ visit: (String, JSONValue) throws -> Void) -> KVError? {
        var parser = JSONParser(text, maxDepth: maxDepth)
        return parser.parseMembers(visit)
    }
}
