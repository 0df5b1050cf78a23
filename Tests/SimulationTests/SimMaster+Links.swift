import KVCommon

/// The master's side of the network: `ReplicaLink` (lazy connect, `stat` first, pairing replies with calls),
/// `CommitDelivery` (re-send `com` until acknowledged; resolve in-doubt seqs a replica reports) and the
/// answers to replicas' `qry`.
extension SimMaster {
    /// Sends `request` to `replica` on its link, connecting first if needed; false when the replica is down
    /// (connection refused).
    @discardableResult
    func call(_ replica: String, _ request: WireRequest, purpose: Purpose) -> Bool {
        guard replicaIsUp(replica) else { return false }
        if links[replica].map({ !network.isOpen($0.connection) }) ?? true {
            let connection = network.open(client: SimMaster.name, server: replica)
            links[replica] = Link(connection: connection)
            context.trace("master: connect to \(replica) (c\(connection)), stat first")
            send(.stat, on: replica, purpose: .stat)
        }
        send(request, on: replica, purpose: purpose)
        return true
    }

    private func send(_ request: WireRequest, on replica: String, purpose: Purpose) {
        guard let link = links[replica] else { return }
        let id = context.newCallID()
        links[replica]?.calls[id] = purpose
        network.send(on: link.connection, from: SimMaster.name, .request(call: id, request))
    }

    /// At start-up the master connects to every replica (which also resolves their in-doubt seqs).
    func connectAll() {
        for replica in replicas where replicaIsUp(replica) && links[replica] == nil {
            let connection = network.open(client: SimMaster.name, server: replica)
            links[replica] = Link(connection: connection)
            send(.stat, on: replica, purpose: .stat)
        }
    }

    /// A reply from a replica; the first answer to a call wins, later copies are ignored.
    func receive(_ reply: WireReply, call: UInt64, connection: Int, from replica: String) {
        guard let link = links[replica], link.connection == connection,
              let purpose = links[replica]?.calls.removeValue(forKey: call) else { return }
        switch purpose {
        case .transaction(let seq):
            post(seq, .reply(replica: replica, reply))
        case .stat:
            for item in reply.stat?.inDoubt ?? [] {
                switch resolve(item.seq, reason: "\(replica) reconnected while transaction \(item.seq) was undecided") {
                case .commit: self.call(replica, .com(item.seq), purpose: .resolveCommit(item.seq))
                case .abort: self.call(replica, .abrt(item.seq), purpose: .resolveAbort(item.seq))
                case .pending: break
                }
            }
        case .deliver(let seq), .resolveCommit(let seq):
            if reply.status { acknowledged(seq, by: replica) }
        case .resolveAbort, .read:
            break
        }
    }

    /// The connection to a replica broke: every unanswered call on it fails.
    func connectionClosed(_ connection: Int) {
        for replica in replicas {
            guard let link = links[replica], link.connection == connection else { continue }
            links[replica] = nil
            for id in link.calls.keys.sorted() {
                if case .transaction(let seq) = link.calls[id]! {
                    post(seq, .unreachable(replica: replica, reason: "connection lost (\(replica))"))
                }
            }
        }
    }

    // MARK: - CommitDelivery

    /// One round of the background sender: `com` to every participant that has not acknowledged.
    func redeliver() {
        for seq in delivery.keys.sorted() {
            for replica in delivery[seq]!.sorted() where replicaIsUp(replica) {
                context.trace("master: re-send com \(seq) to \(replica)")
                call(replica, .com(seq), purpose: .deliver(seq))
            }
        }
    }

    private func acknowledged(_ seq: UInt64, by replica: String) {
        guard var unacked = delivery[seq] else { return }
        unacked.remove(replica)
        if unacked.isEmpty {
            delivery[seq] = nil
            recordEnd(seq)
        } else {
            delivery[seq] = unacked
        }
    }

    // MARK: - Serving replicas' questions

    /// A replica asks `seq;qry;;`: answer from the registry and the decision log.
    func serve(_ request: WireRequest, call: UInt64, connection: Int, from replica: String) {
        guard request.command == .qry, let seq = request.seq else { return }
        let answer: WireReply
        switch resolve(seq, reason: "\(replica) asked about in-doubt transaction \(seq)") {
        case .commit: answer = WireReply(status: true, code: .committed, message: "committed", seq: seq, server: SimMaster.name)
        case .abort: answer = WireReply(status: true, code: .aborted, message: "aborted", seq: seq, server: SimMaster.name)
        case .pending: answer = WireReply(status: false, code: .busy, message: "commit being recorded; ask again", seq: seq,
                                          server: SimMaster.name)
        }
        network.send(on: connection, from: SimMaster.name, .reply(call: call, answer))
    }

    /// A client read through the master (it shares the pipelined link with 2PC traffic).
    func read(_ key: [UInt8], from replica: String) {
        if call(replica, .get(key), purpose: .read) { context.stats.reads += 1 }
    }
}
