import Foundation

/// An exclusive hold on a data directory for the life of the process: `flock` on `<directory>/lock`, which
/// names the holder's pid. Taken before anything else in the directory is read or written, so a second
/// process started on it (by mistake, or by a unit and a shell at once) stops at once instead of rewriting the
/// first one's files. The kernel releases it when the process exits, however it exits.
public final class DirectoryLock {
    private let fd: Int32
    public let path: String

    /// Takes the lock or throws `StorageError.locked` naming the holder; `process` names what takes it.
    public init(directory: String, process: String) throws {
        try FileIO.makeDirectory(directory)
        path = directory + "/lock"
        fd = try FileIO.open(path, flags: O_RDWR | O_CREAT)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            let holder = String(decoding: (try? FileIO.readAll(path)) ?? [], as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            if code == EWOULDBLOCK { throw StorageError.locked(path: directory, holder: holder, process: process) }
            throw StorageError.io(operation: "flock", path: path, errno: code)
        }
        try FileIO.truncate(fd, to: 0, path: path)
        try FileIO.writeAll(fd, Array("\(getpid())\n".utf8), path: path)
    }

    deinit { close(fd) }
}
