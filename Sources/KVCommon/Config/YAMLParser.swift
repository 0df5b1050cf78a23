import CYAML

/// The only file that touches libyaml: loads one YAML document into a `YAMLNode`, freeing every C handle.
public enum YAMLParser {
    /// Parses `text`; `fileName` only labels error messages.
    public static func parse(_ text: String, fileName: String) throws -> YAMLNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw KVError.config(file: fileName, line: 1, column: 1, message: "libyaml could not initialise")
        }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        var document = yaml_document_t()
        let loaded: Int32 = bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            return yaml_parser_load(&parser, &document)
        }
        guard loaded == 1 else {
            let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
            let context = parser.context.map { String(cString: $0) + ": " } ?? ""
            throw KVError.config(file: fileName, line: Int(parser.problem_mark.line) + 1,
                                 column: Int(parser.problem_mark.column) + 1, message: "YAML: \(context)\(problem)")
        }
        defer { yaml_document_delete(&document) }
        guard let root = yaml_document_get_root_node(&document) else {
            throw KVError.config(file: fileName, line: 1, column: 1, message: "the file is empty")
        }
        return convert(root, in: &document)
    }

    private static func mark(_ mark: yaml_mark_t) -> YAMLMark {
        YAMLMark(line: Int(mark.line) + 1, column: Int(mark.column) + 1)
    }

    private static func convert(_ node: UnsafeMutablePointer<yaml_node_t>, in document: inout yaml_document_t) -> YAMLNode {
        let position = mark(node.pointee.start_mark)
        switch node.pointee.type {
        case YAML_SEQUENCE_NODE:
            var items: [YAMLNode] = []
            var item = node.pointee.data.sequence.items.start
            while let current = item, current != node.pointee.data.sequence.items.top {
                if let child = yaml_document_get_node(&document, current.pointee) {
                    items.append(convert(child, in: &document))
                }
                item = current + 1
            }
            return .sequence(items, position)
        case YAML_MAPPING_NODE:
            var entries: [YAMLNode.MappingEntry] = []
            var pair = node.pointee.data.mapping.pairs.start
            while let current = pair, current != node.pointee.data.mapping.pairs.top {
                if let keyNode = yaml_document_get_node(&document, current.pointee.key),
                   let valueNode = yaml_document_get_node(&document, current.pointee.value) {
                    let key = convert(keyNode, in: &document)
                    let keyText: String
                    if case .scalar(let text, _) = key { keyText = text } else { keyText = "<\(key.kindName)>" }
                    entries.append(YAMLNode.MappingEntry(key: keyText, keyMark: key.mark,
                                                         value: convert(valueNode, in: &document)))
                }
                pair = current + 1
            }
            return .mapping(entries, position)
        default:
            let scalar = node.pointee.data.scalar
            let text = scalar.value.map { pointer in
                String(decoding: UnsafeBufferPointer(start: pointer, count: Int(scalar.length)), as: UTF8.self)
            } ?? ""
            return .scalar(text, position)
        }
    }
}
