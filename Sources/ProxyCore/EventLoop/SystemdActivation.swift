#if canImport(Glibc)
import Glibc
#endif

/// systemd integration without libsystemd: socket activation (`LISTEN_FDS`) and `sd_notify`.
public enum SystemdActivation {
    /// The first inherited descriptor (`SD_LISTEN_FDS_START`).
    static let firstFD: Int32 = 3

    /// Descriptors passed by systemd socket activation, or `nil` when not activated (or meant for another PID).
    /// Clears the variables so child processes (exec plugins) do not inherit them, as `sd_listen_fds(1)` does.
    public static func listenFDs(environment: [String: String]) -> [Int32]? {
        guard let countText = environment["LISTEN_FDS"], let count = Int32(countText), count > 0 else { return nil }
        if let pidText = environment["LISTEN_PID"], let pid = Int32(pidText), pid != getpid() { return nil }
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDNAMES")
        return (0..<count).map { firstFD + $0 }
    }

    /// Sends a state string (`READY=1`, `STOPPING=1`, `WATCHDOG=1`) to `$NOTIFY_SOCKET`; a no-op without it.
    public static func notify(_ state: String) {
        guard let path = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !path.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        // Abstract namespace sockets are written with a leading "@".
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard pathBytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in pathBytes.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count)
        let message = Array(state.utf8)
        _ = message.withUnsafeBytes { buf in
            withUnsafePointer(to: &addr) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    sendto(fd, buf.baseAddress, buf.count, Int32(MSG_NOSIGNAL), sa, length)
                }
            }
        }
    }

    /// The watchdog interval systemd expects pings at (`WATCHDOG_USEC`), halved for safety.
    public static func watchdogInterval(environment: [String: String]) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 else { return nil }
        if let pidText = environment["WATCHDOG_PID"], let pid = Int32(pidText), pid != getpid() { return nil }
        return .microseconds(usec / 2)
    }
}
