internal import Glibc

/// Unbuffered writes to the standard streams and a directory check for the executable, without Foundation's
/// `FileHandle`/`FileManager` types.
public enum Console {
    /// Writes all of `text` to stdout now (no stdio buffering: a parent waiting for a line sees it at once).
    public static func writeStdout(_ text: String) { write(text, to: 1) }

    public static func writeStderr(_ text: String) { write(text, to: 2) }

    private static func write(_ text: String, to fd: Int32) {
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            done += n
        }
    }

    /// Whether `path` is a directory (following symlinks).
    public static func isDirectory(_ path: String) -> Bool {
        ConfigFiles.existence(path) == .directory
    }
}
