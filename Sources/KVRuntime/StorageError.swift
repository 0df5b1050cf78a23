import Foundation
import NIOCore

/// Every error KVRuntime reports, each naming the file and what to do.
public enum StorageError: Error, CustomStringConvertible {
    /// A system call failed; `errno` is kept for the message.
    case io(operation: String, path: String, errno: Int32)
    /// A record in the middle of a log failed its checksum or does not decode: the file is damaged.
    case corrupt(path: String, offset: Int, detail: String)
    /// The file does not start with the expected magic header.
    case badHeader(path: String)
    /// Another process holds the directory (`DirectoryLock`); `process` is what holds it (kv-master, kv-replicad).
    case locked(path: String, holder: String, process: String)
    /// A server could not bind `address`, which cluster.yaml sets at `setting`.
    case cannotListen(address: String, setting: String, reason: String, errno: Int32?)

    /// What to do about a failed system call on `path`, where the errno says it.
    private static func advice(_ code: Int32, path: String) -> String {
        switch code {
        case EACCES, EPERM: return " (check the owner and mode of \(path) and its directories: the process runs as its "
            + "unit's user, and under systemd may write only its StateDirectory)"
        case ENOTDIR: return " (a component of the path is a file, not a directory: check the directory in cluster.yaml)"
        case ENOSPC, EDQUOT: return " (the disk is full: free space, then start again)"
        case EROFS: return " (the filesystem is read-only)"
        default: return ""
        }
    }

    /// A bind that failed, with the errno of NIO's `IOError` kept for the advice.
    public static func listenFailed(_ error: Error, address: String, setting: String) -> StorageError {
        let code = (error as? IOError)?.errnoCode
        let reason = code.map { String(cString: strerror($0)) } ?? "\(error)"
        return .cannotListen(address: address, setting: setting, reason: reason, errno: code)
    }

    public var description: String {
        switch self {
        case .io(let operation, let path, let code):
            return "storage: \(operation) \(path): \(String(cString: strerror(code)))" + Self.advice(code, path: path)
        case .corrupt(let path, let offset, let detail):
            return "storage: \(path) is corrupt at byte offset \(offset): \(detail); "
                + "refusing to start (restore this replica from a healthy one, see docs/OPERATIONS.md)"
        case .badHeader(let path):
            return "storage: \(path) is not a kv log (bad header); move it away or point data_dir elsewhere"
        case .locked(let path, let holder, let process):
            let what = process == "kv-master" ? "two masters on one directory would reuse seqs and undo each other's files"
                : "two replicas on one data_dir would overwrite each other's log; give each its own"
            return "storage: another \(process)\(holder.isEmpty ? "" : " (pid \(holder))") holds \(path); stop it "
                + "first (\(what))"
        case .cannotListen(let address, let setting, let reason, let code):
            var text = "cannot listen on \(address) (\(setting)): \(reason)"
            switch code {
            case EADDRINUSE?:
                text += "; another process holds it (an earlier instance still stopping? ss -ltnp shows which): stop "
                    + "it, or change \(setting)"
            case EADDRNOTAVAIL?:
                text += "; no interface of this host has that address: \(setting) must be an address of this host "
                    + "(or 0.0.0.0)"
            case EACCES?:
                text += "; ports below 1024 need privileges kv does not take: use a higher port"
            default: break
            }
            return text
        }
    }
}
