import Foundation

/// The tokens file `security.tokens_file` names: the HTTP API's bearer tokens, each stored as its SHA-256.
///
/// ```yaml
/// tokens:
///   - {name: ops, role: admin, sha256: 9f86d0...}
///   - {name: app, role: read-write, prefixes: [app/], sha256: ...}
///   - {name: dashboards, role: read-only, sha256: ...}
/// ```
///
/// `scripts/kv-token` makes tokens and edits the file; the master reads it at start and at every reload, so a
/// token is revoked by removing its entry and reloading. Every mistake is an error with file:line:col.
public enum TokenFile {
    public static func load(path: String) throws -> AccessTokens {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw KVError.config(file: path, line: 1, column: 1, message: "cannot read the tokens file (does it exist?); "
                + "scripts/kv-token add NAME ROLE makes it")
        }
        return try parse(text, fileName: path)
    }

    public static func parse(_ text: String, fileName: String) throws -> AccessTokens {
        let root = try YAMLParser.parse(text, fileName: fileName)
        let loader = ClusterConfigLoader(fileName: fileName, baseDirectory: "/")
        func error(_ mark: YAMLMark, _ message: String) -> KVError {
            .config(file: fileName, line: mark.line, column: mark.column, message: message)
        }
        let top = try ClusterConfigLoader.Fields(root, path: "tokens file", loader: loader, known: ["tokens"])
        guard let list = top.node("tokens") else { return AccessTokens([]) }
        guard case .sequence(let items, _) = list else { throw error(list.mark, "tokens must be a list") }
        var tokens: [AccessToken] = []
        for (index, item) in items.enumerated() {
            let path = "tokens[\(index)]"
            let fields = try ClusterConfigLoader.Fields(item, path: path, loader: loader,
                                                        known: ["name", "role", "sha256", "prefixes"])
            let name = try fields.identifier("name")
            let roleText = try fields.string("role")
            guard let role = TokenRole(rawValue: roleText) else {
                throw error(fields.node("role")!.mark, "\(path).role '\(roleText)' is not one of "
                    + TokenRole.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let hex = try fields.string("sha256")
            guard let digest = HexCoding.decode(hex.lowercased()), digest.count == 32 else {
                throw error(fields.node("sha256")!.mark, "\(path).sha256 must be 64 hex digits (the SHA-256 of the token)")
            }
            var prefixes: [[UInt8]] = []
            if let node = fields.node("prefixes") {
                guard case .sequence(let entries, _) = node else { throw error(node.mark, "\(path).prefixes must be a list") }
                for entry in entries {
                    guard case .scalar(let prefix, _) = entry, !prefix.isEmpty else {
                        throw error(entry.mark, "\(path).prefixes: each prefix must be a non-empty string")
                    }
                    prefixes.append(Array(prefix.utf8))
                }
            }
            if role == .readWrite && prefixes.isEmpty {
                throw error(item.mark, "\(path): a read-write token needs prefixes (the keys it may write); use role "
                    + "admin for a token that may write everything")
            }
            if role == .admin && !prefixes.isEmpty {
                throw error(fields.node("prefixes")!.mark, "\(path): an admin token may do everything; prefixes do not apply")
            }
            if let other = tokens.firstIndex(where: { $0.name == name }) {
                throw error(item.mark, "\(path).name '\(name)' is already used by tokens[\(other)]")
            }
            if let other = tokens.firstIndex(where: { $0.digest == digest }) {
                throw error(item.mark, "\(path) has the same token as tokens[\(other)]")
            }
            tokens.append(AccessToken(name: name, digest: digest, role: role, prefixes: prefixes))
        }
        return AccessTokens(tokens)
    }
}
