import Foundation

extension TxnSpec {
    /// The wire JSON (keys and values base64).
    public func wireJSON() -> [UInt8] {
        var writer = JSONWriter(capacity: sizeBytes * 2 + 64)
        writer.field("compare", rawJSON: JSONWriter.array(compare.map { item in
            var inner = JSONWriter()
            inner.field("key", Data(item.key).base64EncodedString())
            inner.field("target", item.target.rawValue)
            inner.field("op", item.comparison.rawValue)
            if item.target == .value {
                inner.field("value", Data(item.bytes).base64EncodedString())
            } else {
                inner.field("value", item.number)
            }
            return inner.finish()
        }))
        writer.field("success", rawJSON: Self.opsJSON(success))
        writer.field("failure", rawJSON: Self.opsJSON(failure))
        return writer.finish()
    }

    private static func opsJSON(_ ops: [Op]) -> [UInt8] {
        JSONWriter.array(ops.map { op in
            var inner = JSONWriter()
            switch op {
            case .put(let key, let value):
                inner.field("op", "put")
                inner.field("key", Data(key).base64EncodedString())
                inner.field("value", Data(value).base64EncodedString())
            case .delete(let key):
                inner.field("op", "del")
                inner.field("key", Data(key).base64EncodedString())
            case .get(let key):
                inner.field("op", "get")
                inner.field("key", Data(key).base64EncodedString())
            }
            return inner.finish()
        })
    }

    /// Parses a transaction from JSON. `decode` turns a JSON string into bytes: base64 on the wire, UTF-8 in
    /// the HTTP API (where `key_base64`/`value_base64` may be used instead for binary data).
    public static func parse(_ json: JSONValue, base64: Bool) throws -> TxnSpec {
        guard case .object = json else { throw KVError.txnMalformed("a transaction must be a JSON object") }
        func bytes(_ item: JSONValue, _ name: String, required: Bool = true) throws -> [UInt8]? {
            if !base64, let text = item[name]?.stringValue { return Array(text.utf8) }
            if let encoded = item[base64 ? name : name + "_base64"]?.stringValue {
                guard let data = Data(base64Encoded: encoded) else { throw KVError.txnMalformed("\(name) is not base64") }
                return Array(data)
            }
            if required { throw KVError.txnMalformed("missing '\(name)'") }
            return nil
        }
        var compares: [Compare] = []
        for item in json["compare"]?.arrayValue ?? [] {
            guard let targetText = item["target"]?.stringValue, let target = Target(rawValue: targetText) else {
                throw KVError.txnMalformed("compare.target must be version, created, value or exists")
            }
            let comparison = Comparison(rawValue: item["op"]?.stringValue ?? "=")
            guard let comparison else { throw KVError.txnMalformed("compare.op must be =, !=, < or >") }
            var compare = Compare(key: try bytes(item, "key")!, target: target, comparison: comparison)
            switch target {
            case .value:
                compare.bytes = try bytes(item, "value")!
            case .exists:
                guard let flag = item["value"]?.boolValue ?? item["value"]?.uint64Value.map({ $0 != 0 }) else {
                    throw KVError.txnMalformed("compare on exists needs \"value\": true or false")
                }
                compare.number = flag ? 1 : 0
            case .version, .created:
                guard let number = item["value"]?.uint64Value else {
                    throw KVError.txnMalformed("compare on \(target.rawValue) needs a number \"value\"")
                }
                compare.number = number
            }
            compares.append(compare)
        }
        func ops(_ name: String) throws -> [Op] {
            try (json[name]?.arrayValue ?? []).map { item in
                let key = try bytes(item, "key")!
                switch item["op"]?.stringValue {
                case "put": return .put(key: key, value: try bytes(item, "value")!)
                case "del", "delete": return .delete(key: key)
                case "get": return .get(key: key)
                default: throw KVError.txnMalformed("\(name) op must be put, del or get")
                }
            }
        }
        let spec = TxnSpec(compare: compares, success: try ops("success"), failure: try ops("failure"))
        for branch in [spec.success, spec.failure] {
            let written = branch.filter { if case .get = $0 { return false } else { return true } }.map(\.key)
            guard Set(written).count == written.count else {
                throw KVError.txnMalformed("a key may be written only once per branch")
            }
            guard written.allSatisfy({ !$0.isEmpty }), branch.allSatisfy({ !$0.key.isEmpty }) else {
                throw KVError.txnMalformed("keys must not be empty")
            }
        }
        return spec
    }
}
