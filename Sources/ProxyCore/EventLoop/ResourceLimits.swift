import Glibc

/// The process's open-file limit (`RLIMIT_NOFILE`).
public enum OpenFileLimit {
    public struct Limits: Sendable, Equatable {
        public var soft: UInt64
        public var hard: UInt64
    }

    /// The current soft and hard limits (`RLIM_INFINITY` as `UInt64.max`).
    public static func current() -> Limits {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return Limits(soft: 1024, hard: 1024) }
        return Limits(soft: UInt64(limit.rlim_cur), hard: UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard limit, as Go programs (kubectl among them) do at start: the soft 1024
    /// of login shells and systemd services is too few for a proxy holding a watch per client. An unlimited hard
    /// limit is capped at the kernel's `fs.nr_open`.
    /// - Returns: the limits before and after; `after == before` when nothing changed or the change failed, with
    ///   the error.
    @discardableResult
    public static func raiseSoftToHard() -> (before: Limits, after: Limits, error: IOError?) {
        let before = current()
        var target = before.hard
        if target == UInt64.max {  // RLIM_INFINITY
            let text = (try? Posix.readFile(atPath: "/proc/sys/fs/nr_open")).map { String(decoding: $0, as: UTF8.self) }
            target = text.flatMap { UInt64($0.trimmingWhitespace()) } ?? 1_048_576
        }
        guard target > before.soft else { return (before, before, nil) }
        var limit = rlimit(rlim_cur: rlim_t(target), rlim_max: rlim_t(before.hard))
        guard setrlimit(resource, &limit) == 0 else {
            return (before, before, IOError(errno: Glibc.errno, function: "setrlimit"))
        }
        return (before, current(), nil)
    }

    private static var resource: __rlimit_resource_t { __rlimit_resource_t(RLIMIT_NOFILE.rawValue) }
}
