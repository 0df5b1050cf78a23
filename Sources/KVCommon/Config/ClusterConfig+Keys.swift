import Foundation

extension ClusterConfig {
    /// The cluster key `security.cluster_key_file` names, read and checked; nil when none is configured (the links
    /// are then open to anyone who can reach them). A key file that is missing, unreadable, readable by group or
    /// others, or not a key is a configuration error at the place cluster.yaml names it.
    public func clusterKey() throws -> ClusterKey? {
        guard let file = security.clusterKeyFile else { return nil }
        let mark = security.clusterKeyMark
        func failure(_ message: String) -> KVError {
            .config(file: path, line: mark.line, column: mark.column, message: "security.cluster_key_file \(file): \(message)")
        }
        var info = stat()
        guard stat(file, &info) == 0 else {
            throw failure("cannot read it (\(String(cString: strerror(errno)))); scripts/cluster.sh and "
                + "scripts/install.sh create one, or run: kv-replicad keygen --out \(file)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw failure("mode \(String(info.st_mode & 0o777, radix: 8)) lets others read the key; chmod 600 it")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw failure("cannot read it (permission denied?)")
        }
        do {
            return try ClusterKey(fileText: String(decoding: data, as: UTF8.self))
        } catch let error as KVError {
            throw failure("\(error)")
        }
    }
}
