import Foundation

/// Thin wrappers over the POSIX calls storage needs. Every call retries on EINTR and throws
/// `StorageError.io` naming the operation and the path.
public enum FileIO {
    @discardableResult
    static func call(_ operation: String, _ path: String, _ body: () -> Int) throws -> Int {
        while true {
            let result = body()
            if result >= 0 { return result }
            if errno == EINTR { continue }
            throw StorageError.io(operation: operation, path: path, errno: errno)
        }
    }

    public static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        Int32(try call("open", path) { Int(Foundation.open(path, flags | O_CLOEXEC, mode)) })
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = try bytes.withUnsafeBytes { buffer in
                try call("write", path) { Foundation.write(fd, buffer.baseAddress! + offset, buffer.count - offset) }
            }
            offset += written
        }
    }

    public static func fdatasync(_ fd: Int32, path: String) throws {
        try call("fdatasync", path) { Int(Foundation.fdatasync(fd)) }
    }

    public static func fsync(_ fd: Int32, path: String) throws {
        try call("fsync", path) { Int(Foundation.fsync(fd)) }
    }

    /// Makes a new entry in `directory` (a created or renamed file) durable.
    public static func fsyncDirectory(_ directory: String) throws {
        let fd = try open(directory, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: directory)
    }

    public static func readAll(_ path: String) throws -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY)
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = try chunk.withUnsafeMutableBytes { buffer in
                try call("read", path) { Foundation.read(fd, buffer.baseAddress, buffer.count) }
            }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
        }
    }

    public static func truncate(_ fd: Int32, to length: Int, path: String) throws {
        try call("ftruncate", path) { Int(ftruncate(fd, off_t(length))) }
    }

    /// Creates `path` and its parents if missing.
    /// Creates `path` and any missing parents (mode 0777 less the umask, as mkdir -p), keeping the real errno of
    /// a failure so the message says what is wrong (a file in the way, no permission, a read-only disk).
    public static func makeDirectory(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o777) != 0 {
                let code = errno
                guard code == EEXIST else { throw StorageError.io(operation: "mkdir", path: current, errno: code) }
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: current, isDirectory: &isDirectory), isDirectory.boolValue else {
                    throw StorageError.io(operation: "mkdir", path: current, errno: ENOTDIR)
                }
            }
        }
    }

    /// Renames `source` to `target` (atomically replacing it); the caller fsyncs the directory.
    public static func rename(_ source: String, to target: String) throws {
        try call("rename", source) { Int(Foundation.rename(source, target)) }
    }

    /// Replaces `path` with `bytes` atomically: write a temp file, fsync it, rename, fsync the directory.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temp = path + ".tmp"
        let fd = try open(temp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try writeAll(fd, bytes, path: temp)
            try fsync(fd, path: temp)
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        try rename(temp, to: path)
        try fsyncDirectory((path as NSString).deletingLastPathComponent)
    }
}
