extension LinkRole {
    /// Whether a peer authenticated in this role may send `command`. Two-phase commit, membership and state
    /// transfer belong to the master; an in-doubt replica asks its peers `qry`; an operator's tool reads.
    public func may(_ command: WireCommand) -> Bool {
        switch (self, command) {
        case (_, .hello), (_, .auth):
            return false
        case (.master, _):
            return true
        case (.replica, .qry), (.replica, .stat):
            return true
        case (.operator, .get), (.operator, .stat), (.operator, .list):
            return true
        case (.replica, _), (.operator, _):
            return false
        }
    }

    /// The commands this role may send, for error messages.
    public var allowedCommands: [WireCommand] { WireCommand.allCases.filter(may) }
}
