import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// File-system helpers for configuration loading: lexical path handling like Go's `filepath`, and reads that report
/// the OS reason (`No such file or directory`) for error messages.
enum ConfigFiles {
    enum Existence { case missing, directory, present }

    /// Whether `path` exists (following symlinks). Anything other than ENOENT/ENOTDIR counts as present, so the later
    /// read reports the real reason.
    static func existence(_ path: String) -> Existence {
        var info = stat()
        if stat(path, &info) != 0 {
            return (errno == ENOENT || errno == ENOTDIR) ? .missing : .present
        }
        return (info.st_mode & S_IFMT) == S_IFDIR ? .directory : .present
    }

    /// A regular file (after symlinks) that this process may execute: what exec.LookPath accepts.
    static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return false }
        return access(path, X_OK) == 0
    }

    /// Reads a whole file, or returns the OS reason it cannot be read (`strerror` text).
    static func read(_ path: String) -> Result<[UInt8], ReadFailure> {
        do {
            return .success(try Posix.readFile(atPath: path))
        } catch {
            return .failure(ReadFailure(errno: error.errno))
        }
    }

    struct ReadFailure: Error {
        let errno: Int32
        var reason: String { String(cString: strerror(errno)) }
    }

    /// The working directory of the process, used for relative command-line paths.
    static var currentDirectory: String { Posix.currentDirectory() ?? "/" }

    /// `path` if absolute, else `base/path`; always cleaned.
    static func resolve(_ path: String, against base: String) -> String {
        clean(path.hasPrefix("/") ? path : base + "/" + path)
    }

    /// The directory part of an absolute file path (`/a/b/c` → `/a/b`, `/c` → `/`).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let dir = String(path[..<slash])
        return dir.isEmpty ? "/" : dir
    }

    /// Lexical cleaning like Go's `filepath.Clean`: collapses "//", removes ".", resolves ".." without touching the
    /// file system.
    static func clean(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var out: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                if let last = out.last, last != ".." {
                    out.removeLast()
                } else if !absolute {
                    out.append(part)
                }
            default: out.append(part)
            }
        }
        let joined = out.joined(separator: "/")
        if absolute { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }
}
