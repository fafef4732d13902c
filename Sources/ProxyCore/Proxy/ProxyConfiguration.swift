import FoundationEssentials

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
    /// Number of event loops (default: one per CPU this process may run on).
    public var loopCount: Int
    /// One log line per request at info level.
    public var accessLog: Bool
    /// How long a graceful stop waits for in-flight requests.
    public var drainTimeout: Duration
    /// `--www`: a folder served under `wwwPrefix` (not filtered, as in kubectl).
    public var wwwDirectory: String?
    /// `--www-prefix`.
    public var wwwPrefix: String = "/static/"
    /// `--keepalive`: TCP keep-alive period of upgrade connections (exec, attach, port-forward); `nil` leaves the
    /// system default (keep-alive off).
    public var upgradeKeepAlive: Duration? = .seconds(15)
    /// HTTP/2 connection health check (client-go's `HTTP2_READ_IDLE_TIMEOUT_SECONDS`, `HTTP2_PING_TIMEOUT_SECONDS`).
    public var http2HealthCheck = HTTP2HealthCheck()
    /// `--accept-uids`: local users whose connections are served (default: proxyd's own uid and root; `*` in a pod).
    public var acceptUIDs = AcceptedUIDs.ownerAndRoot
    /// `--max-connections`; `nil` derives it from the open-file limit at start (`ConnectionPolicy`).
    public var maxConnections: Int?
    /// `--read-only`: only GET, HEAD and OPTIONS, no protocol upgrades.
    public var readOnly = false
    /// Header, idle and request-body timeouts of client connections.
    public var clientTimeouts = ClientTimeouts()
    /// Several apiservers: `--failover-server`, `--discover-apiservers` and their tuning (docs/failover.md).
    public var failover = FailoverConfiguration()
    /// How to load `upstream` again on SIGHUP or a kubeconfig change; nil: the upstream never changes.
    public var upstreamSource: UpstreamSource?
    /// Whether the kubeconfig files of `upstreamSource` are watched (a change reloads, like SIGHUP).
    public var watchConfigurationFiles = true
    /// `--logging-format`: the access log's shape (the log handler itself is the executable's choice).
    public var logFormat = LogFormat.text

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
        Posix.availableProcessorCount()
    }
}

/// `--logging-format`, as the Kubernetes components spell it.
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's stream format, one line per message (the default, unchanged).
    case text
    /// One JSON object per line: `ts`, `level`, `msg` and the message's fields.
    case json
}

/// After `readIdle` without a frame from the apiserver, an upstream HTTP/2 connection sends a PING; without an
/// answer within `pingTimeout` the connection is dropped (its streams fail with 502) and the next request reconnects.
public struct HTTP2HealthCheck: Sendable, Equatable {
    /// `nil` turns the check off.
    public var readIdle: Duration?
    public var pingTimeout: Duration

    public init(readIdle: Duration? = .seconds(30), pingTimeout: Duration = .seconds(15)) {
        self.readIdle = readIdle
        self.pingTimeout = pingTimeout
    }

    /// client-go's environment variables: whole seconds; a read-idle of 0 disables the check; a value that is not
    /// an integer keeps the default (client-go logs a warning; so does proxyd: `warnings` lists them).
    public static func fromEnvironment(_ environment: [String: String]) -> (HTTP2HealthCheck, warnings: [String]) {
        var check = HTTP2HealthCheck()
        var warnings: [String] = []
        if let text = environment["HTTP2_READ_IDLE_TIMEOUT_SECONDS"], !text.isEmpty {
            if let seconds = Int(text) {
                check.readIdle = seconds == 0 ? nil : .seconds(seconds)
            } else {
                warnings.append("Illegal HTTP2_READ_IDLE_TIMEOUT_SECONDS(\"\(text)\"): not an integer. Default value 30 is used")
            }
        }
        if let text = environment["HTTP2_PING_TIMEOUT_SECONDS"], !text.isEmpty {
            if let seconds = Int(text) {
                check.pingTimeout = .seconds(seconds)
            } else {
                warnings.append("Illegal HTTP2_PING_TIMEOUT_SECONDS(\"\(text)\"): not an integer. Default value 15 is used")
            }
        }
        return (check, warnings)
    }
}

/// Go's `time.ParseDuration` for the duration flags kubectl users write (`30s`, `1m30s`, `500ms`, `-1s`, `0`).
public enum GoDuration {
    public static func parse(_ text: String) -> Duration? {
        var s = Substring(text)
        var negative = false
        if s.hasPrefix("-") || s.hasPrefix("+") {
            negative = s.first == "-"
            s = s.dropFirst()
        }
        if s == "0" { return .zero }
        guard !s.isEmpty else { return nil }
        var totalNanos: Double = 0
        while !s.isEmpty {
            let number = s.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            s = s.dropFirst(number.count)
            let unit = s.prefix { !$0.isNumber && $0 != "." }
            s = s.dropFirst(unit.count)
            let scale: Double
            switch unit {
            case "ns": scale = 1
            case "us", "µs": scale = 1_000
            case "ms": scale = 1_000_000
            case "s": scale = 1_000_000_000
            case "m": scale = 60_000_000_000
            case "h": scale = 3_600_000_000_000
            default: return nil
            }
            totalNanos += value * scale
        }
        let duration = Duration.nanoseconds(Int64(totalNanos))
        return negative ? .zero - duration : duration
    }
}
