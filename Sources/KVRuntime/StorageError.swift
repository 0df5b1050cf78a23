import Foundation

/// Every error KVRuntime reports, each naming the file and what to do.
public enum StorageError: Error, CustomStringConvertible {
    /// A system call failed; `errno` is kept for the message.
    case io(operation: String, path: String, errno: Int32)
    /// A record in the middle of a log failed its checksum or does not decode: the file is damaged.
    case corrupt(path: String, offset: Int, detail: String)
    /// The file does not start with the expected magic header.
    case badHeader(path: String)
    /// Another process holds the directory (`DirectoryLock`).
    case locked(path: String, holder: String)

    public var description: String {
        switch self {
        case .io(let operation, let path, let code):
            return "storage: \(operation) \(path): \(String(cString: strerror(code)))"
        case .corrupt(let path, let offset, let detail):
            return "storage: \(path) is corrupt at byte offset \(offset): \(detail); "
                + "refusing to start (restore this replica from a healthy one, see docs/OPERATIONS.md)"
        case .badHeader(let path):
            return "storage: \(path) is not a kv log (bad header); move it away or point data_dir elsewhere"
        case .locked(let path, let holder):
            return "storage: another kv-master\(holder.isEmpty ? "" : " (pid \(holder))") holds \(path); stop it "
                + "first (two masters on one directory would reuse seqs and undo each other's files)"
        }
    }
}
