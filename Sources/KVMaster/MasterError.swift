/// Every error the master reports at start-up or while running, with a message an operator can act on.
enum MasterError: Error, CustomStringConvertible {
    case fastCGI(String)
    case decisionLog(String)
    /// The configuration cannot be used with the state the master keeps.
    case configuration(String)

    var description: String {
        switch self {
        case .fastCGI(let detail): return "fastcgi: \(detail)"
        case .decisionLog(let detail): return "decision log: \(detail)"
        case .configuration(let detail): return "config: \(detail)"
        }
    }
}
