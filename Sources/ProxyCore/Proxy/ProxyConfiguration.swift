import Foundation

/// Everything `ProxyServer` needs, already validated and with no flags or YAML left.
public struct ProxyConfiguration: Sendable {
    public enum Listen: Sendable, Equatable {
        /// `--address` / `--port` (port 0 picks a free one).
        case tcp(address: String, port: UInt16)
        /// `--unix-socket`.
        case unix(path: String)
        /// Sockets handed over by systemd (`LISTEN_FDS`).
        case inherited(fds: [Int32])
    }

    public var listen: Listen
    public var upstream: UpstreamTarget
    /// `--api-prefix`.
    public var apiPrefix: String
    /// `--append-server-path`.
    public var appendServerPath: Bool
    /// `nil` when `--disable-filter` is given.
    public var filter: RequestFilter?
    /// Number of event loops (default: one per core).
    public var loopCount: Int
    /// One log line per request at info level.
    public var accessLog: Bool
    /// How long a graceful stop waits for in-flight requests.
    public var drainTimeout: Duration
    /// `--www`: a folder served under `wwwPrefix` (not filtered, as in kubectl).
    public var wwwDirectory: String?
    /// `--www-prefix`.
    public var wwwPrefix: String = "/static/"

    public init(
        listen: Listen = .tcp(address: "127.0.0.1", port: 8001),
        upstream: UpstreamTarget,
        apiPrefix: String = "/",
        appendServerPath: Bool = false,
        filter: RequestFilter? = nil,
        loopCount: Int = ProxyConfiguration.defaultLoopCount,
        accessLog: Bool = false,
        drainTimeout: Duration = .seconds(10)
    ) {
        self.listen = listen
        self.upstream = upstream
        self.apiPrefix = apiPrefix
        self.appendServerPath = appendServerPath
        self.filter = filter
        self.loopCount = loopCount
        self.accessLog = accessLog
        self.drainTimeout = drainTimeout
    }

    public static var defaultLoopCount: Int {
        max(1, ProcessInfo.processInfo.activeProcessorCount)
    }
}
