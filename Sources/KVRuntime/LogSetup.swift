import Foundation
import Logging

/// Logging for the executables: one line per event on stderr, which systemd sends to the journal.
public enum LogSetup {
    /// Installs the stderr handler at `levelName` (trace ... critical; unknown names mean info). Under systemd
    /// (stderr connected to the journal: `$JOURNAL_STREAM` set) lines carry their syslog priority instead of a
    /// timestamp, so the journal records each line at its level (`journalctl -p warning`).
    public static func bootstrap(levelName: String) {
        let level = Logger.Level(rawValue: levelName) ?? .info
        let journal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"].map { !$0.isEmpty } ?? false
        LoggingSystem.bootstrap { label in
            if journal { return JournalLogHandler(label: label, logLevel: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// `<priority>level label: metadata [source] message` on stderr: journald strips the `<N>` prefix and stores
/// N as the entry's PRIORITY (sd-daemon(3)); the journal adds the time itself.
struct JournalLogHandler: LogHandler {
    private static let lock = NSLock()
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadataProvider?.get() ?? [:]
        merged.merge(metadata) { $1 }
        merged.merge(event.metadata ?? [:]) { $1 }
        let pretty = merged.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        let priority: Int
        switch event.level {
        case .trace, .debug: priority = 7
        case .info: priority = 6
        case .notice: priority = 5
        case .warning: priority = 4
        case .error: priority = 3
        case .critical: priority = 2
        }
        let bytes = Array("<\(priority)>\(event.level) \(label):\(pretty) [\(event.source)] \(event.message)\n".utf8)
        Self.lock.lock()
        defer { Self.lock.unlock() }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}
