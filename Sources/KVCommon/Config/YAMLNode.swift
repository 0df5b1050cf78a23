/// A position in a YAML file, 1-based as editors show it.
public struct YAMLMark: Equatable, Sendable {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}

/// A YAML document as a plain Swift value, with the position of every node for error messages.
public indirect enum YAMLNode: Equatable, Sendable {
    case scalar(String, YAMLMark)
    case sequence([YAMLNode], YAMLMark)
    case mapping([MappingEntry], YAMLMark)

    public struct MappingEntry: Equatable, Sendable {
        public var key: String
        public var keyMark: YAMLMark
        public var value: YAMLNode
    }

    public var mark: YAMLMark {
        switch self {
        case .scalar(_, let mark), .sequence(_, let mark), .mapping(_, let mark): return mark
        }
    }

    public var kindName: String {
        switch self {
        case .scalar: return "a scalar"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }
}
