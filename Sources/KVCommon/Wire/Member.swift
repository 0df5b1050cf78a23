/// A replica that takes part in transactions, as the master announces it (`memb`) and a replica records it with
/// each prepare: whom to ask about that transaction when the master cannot tell (cooperative termination).
/// Text form `id@host:port`; a list is comma-separated.
public struct Member: Hashable, Sendable, CustomStringConvertible {
    public var id: String
    public var host: String
    public var port: Int

    public init(id: String, host: String, port: Int) {
        self.id = id
        self.host = host
        self.port = port
    }

    public init(_ replica: ClusterConfig.Replica) { self.init(id: replica.id, host: replica.host, port: replica.port) }

    public var description: String { "\(id)@\(host):\(port)" }

    /// `id@host:port,...` (ids and hosts cannot hold `@` or `,`: cluster.yaml does not admit them).
    public static func encode(_ members: [Member]) -> [UInt8] { Array(members.map(\.description).joined(separator: ",").utf8) }

    /// Parses `encode`'s form; nil if any entry is malformed.
    public static func decode(_ bytes: [UInt8]) -> [Member]? {
        guard !bytes.isEmpty else { return [] }
        var members: [Member] = []
        for item in String(decoding: bytes, as: UTF8.self).split(separator: ",", omittingEmptySubsequences: false) {
            guard let at = item.firstIndex(of: "@"), let colon = item.lastIndex(of: ":"), at < colon,
                  let port = Int(item[item.index(after: colon)...]), (1...65_535).contains(port), at != item.startIndex
            else { return nil }
            members.append(Member(id: String(item[..<at]), host: String(item[item.index(after: at)..<colon]), port: port))
        }
        return members
    }
}
