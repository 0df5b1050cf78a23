/// Every error the master reports at start-up or while running, with a message an operator can act on.
enum MasterError: Error, CustomStringConvertible {
    case fastCGI(String)
    case decisionLog(String)

    var description: String {
        switch self {
        case .fastCGI(let detail): return "fastcgi: \(detail)"
        case .decisionLog(let detail): return "decision log: \(detail)"
        }
    }
}
