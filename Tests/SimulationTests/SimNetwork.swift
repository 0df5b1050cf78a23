import KVCommon

/// The messages in flight between the simulated nodes, on simulated connections.
///
/// A connection joins a client (the side that sends requests) and a server. Only the oldest message in each
/// direction of each connection is deliverable (FIFO, as a TCP stream: the master's links pair replies with calls
/// by position, and state transfer relies on `reset`, `load`s and `join` arriving in order). Closing a connection
/// loses what is in flight on it, except (when the client closed it) the requests already sent; whoever owns it
/// is told by the simulation.
final class SimNetwork {
    enum Payload {
        case request(call: UInt64, WireRequest)
        case reply(call: UInt64, WireReply)
    }

    struct Message {
        let id: UInt64
        let connection: Int
        let from: String
        let to: String
        let payload: Payload

        var brief: String {
            switch payload {
            case .request(let call, let request): return "#\(id) c\(connection) \(from)->\(to) call \(call): \(request.brief)"
            case .reply(let call, let reply): return "#\(id) c\(connection) \(from)->\(to) reply \(call): \(reply.brief)"
            }
        }
    }

    struct Connection {
        let client: String
        let server: String
        var open: Bool
        /// A master's link: the id and seq epoch its handshake proved (what `ReplicaConnectionHandler` passes on).
        var link: MasterLink?

        func peer(of node: String) -> String { node == client ? server : client }
    }

    private(set) var inFlight: [Message] = []
    private var connections: [Connection] = []
    private var nextMessageID: UInt64 = 1


    var isEmpty: Bool { inFlight.isEmpty }

    func open(client: String, server: String, link: MasterLink? = nil) -> Int {
        connections.append(Connection(client: client, server: server, open: true, link: link))
        return connections.count - 1
    }

    func isOpen(_ id: Int) -> Bool { connections[id].open }

    func connection(_ id: Int) -> Connection { connections[id] }

    /// Ids of the open connections `node` is an end of, oldest first.
    func openConnections(of node: String) -> [Int] {
        connections.indices.filter { connections[$0].open && (connections[$0].client == node || connections[$0].server == node) }
    }

    var openConnectionIDs: [Int] { connections.indices.filter { connections[$0].open } }

    /// Sends on connection `id` from `from` to the other end; a closed connection swallows the message.
    func send(on id: Int, from: String, _ payload: Payload) {
        guard connections[id].open else { return }
        inFlight.append(Message(id: nextMessageID, connection: id, from: from, to: connections[id].peer(of: from),
                                payload: payload))
        nextMessageID += 1
    }

    /// Indices into `inFlight` that may be delivered next.
    func deliverable() -> [Int] {
        var seen = Set<Int>()
        var result: [Int] = []
        for (index, message) in inFlight.enumerated() {
            // Direction matters: requests and replies on one connection are separate streams.
            let isRequest = message.from == connections[message.connection].client
            let stream = message.connection * 2 + (isRequest ? 0 : 1)
            if seen.insert(stream).inserted { result.append(index) }
        }
        return result
    }

    func remove(at index: Int) -> Message { inFlight.remove(at: index) }

    /// Closes connection `id`; returns how many in-flight messages were lost with it. With `keepingRequests`
    /// the client closed its end after writing: the requests already sent still reach the server, which reads
    /// what is buffered before it sees the end of the stream and executes it, while its replies go nowhere. So a
    /// request the client counts as failed may still run, after requests the client sends on a new connection.
    @discardableResult
    func close(_ id: Int, keepingRequests: Bool = false) -> Int {
        guard connections[id].open else { return 0 }
        connections[id].open = false
        let client = connections[id].client
        let before = inFlight.count
        inFlight.removeAll { $0.connection == id && !(keepingRequests && $0.from == client) }
        return before - inFlight.count
    }

    /// `node` crashed: nothing in flight to it arrives any more, on any connection (a restarted process has
    /// new connections).
    @discardableResult
    func purge(messagesTo node: String) -> Int {
        let before = inFlight.count
        inFlight.removeAll { $0.to == node }
        return before - inFlight.count
    }
}
