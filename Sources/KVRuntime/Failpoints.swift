import Foundation

/// Named crash points for tests. `KV_FAILPOINTS="name1,name2"` in the environment makes `Failpoints.hit`
/// exit the process abruptly (no cleanup, no flush) when execution reaches that name. Unset, it is a no-op.
public enum Failpoints {
    private static let enabled: Set<String> = {
        guard let text = ProcessInfo.processInfo.environment["KV_FAILPOINTS"], !text.isEmpty else { return [] }
        return Set(text.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
    }()

    public static func hit(_ name: String) {
        guard !enabled.isEmpty, enabled.contains(name) else { return }
        FileHandle.standardError.write(Data("failpoint \(name): exiting now\n".utf8))
        _exit(99)
    }
}
