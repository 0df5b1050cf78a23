import Logging

/// Logging for the executables: one line per event on stderr, which systemd sends to the journal.
public enum LogSetup {
    /// Installs the stderr handler at `levelName` (trace ... critical; unknown names mean info).
    public static func bootstrap(levelName: String) {
        let level = Logger.Level(rawValue: levelName) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
