import Foundation

extension ClusterConfig {
    /// The cluster key `security.cluster_key_file` names, read and checked; nil when none is configured (the links
    /// are then open to anyone who can reach them). A key file that is missing, unreadable, readable by group or
    /// others, or not a key is a configuration error at the place cluster.yaml names it. `handedOver`: where the
    /// key is read instead (a systemd unit copies the root-owned file for its dynamic user); cluster.yaml still
    /// decides whether there is a key at all.
    public func clusterKey(handedOver: String? = nil) throws -> ClusterKey? {
        guard let configured = security.clusterKeyFile else { return nil }
        let file = handedOver ?? configured
        let mark = security.clusterKeyMark
        func failure(_ message: String) -> KVError {
            let source = handedOver.map { "\(configured), read as \($0) (--cluster-key-file)" } ?? file
            return .config(file: path, line: mark.line, column: mark.column,
                           message: "security.cluster_key_file \(source): \(message)")
        }
        var info = stat()
        guard stat(file, &info) == 0 else {
            throw failure("cannot read it (\(String(cString: strerror(errno)))); scripts/cluster.sh creates one on "
                + "first start, or make one: umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > \(file)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw failure("mode \(String(info.st_mode & 0o777, radix: 8)) lets others read the key; chmod 600 it")
        }
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw failure("cannot read it (\(error.localizedDescription))")
        }
        do {
            return try ClusterKey(fileText: text)
        } catch let error as KVError {
            throw failure("\(error)")
        }
    }
}
