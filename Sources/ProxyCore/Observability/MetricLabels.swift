/// Label values of proxyd's metrics: small closed sets, so a client cannot grow the number of series.

/// The `method` label: the standard methods by name, anything else (including lower-case spellings, which are
/// different methods in HTTP) as `OTHER`.
enum MethodLabel {
    static let names = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER"]

    static func index(_ method: String) -> Int {
        switch method {
        case "GET": 0
        case "HEAD": 1
        case "POST": 2
        case "PUT": 3
        case "PATCH": 4
        case "DELETE": 5
        case "OPTIONS": 6
        case "CONNECT": 7
        case "TRACE": 8
        default: 9
        }
    }
}

extension FilterRule {
    /// The rule's place in `MetricsSnapshot.filterRejections` (`proxyd_filter_rejections_total{filter}`, the label
    /// is the raw value: `host`, `path`, `method`, `origin`).
    var metricIndex: Int { Self.allCases.firstIndex(of: self) ?? 0 }
}

/// What went wrong with an upstream connection (`proxyd_upstream_connection_errors_total{kind}`).
enum UpstreamErrorKind: Int, CaseIterable, Sendable {
    /// TCP connect (or the `proxy-url` tunnel) failed or timed out.
    case connect
    /// The TLS handshake failed or timed out, or TLS failed later.
    case tls
    /// The apiserver broke HTTP/2 or HTTP/1.1 framing, or reset the connection mid-exchange.
    case `protocol`
    /// An HTTP/2 PING went unanswered (`HTTP2_PING_TIMEOUT_SECONDS`).
    case healthCheck

    var label: String {
        switch self {
        case .connect: "connect"
        case .tls: "tls"
        case .protocol: "protocol"
        case .healthCheck: "health_check"
        }
    }
}

/// Where a credential comes from (`proxyd_credential_refreshes_total{source}`).
public enum CredentialSourceLabel: Int, CaseIterable, Sendable {
    case tokenFile
    case clientCertificate
    case execPlugin

    var label: String {
        switch self {
        case .tokenFile: "token_file"
        case .clientCertificate: "client_certificate"
        case .execPlugin: "exec_plugin"
        }
    }
}

/// How a proxied request is counted: long-running requests (watches, followed logs, upgrades) stay out of the
/// latency histogram, whose buckets would mean nothing for a stream that lasts hours.
enum RequestKind: Equatable {
    case regular
    /// `?watch=true` or a `/watch/` path (the legacy form).
    case watch
    /// `?follow=true` (logs).
    case follow
    /// An `Upgrade` request (exec, attach, port-forward, WebSocket).
    case upgrade

    var isLongRunning: Bool { self != .regular }

    /// Classifies an upstream request target (path and query, after API-prefix mapping).
    static func classify(target: String, isUpgrade: Bool) -> RequestKind {
        if isUpgrade { return .upgrade }
        let path: Substring
        var follow = false
        if let mark = target.firstIndex(of: "?") {
            path = target[..<mark]
            for pair in target[target.index(after: mark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, isTrue(parts[1]) else { continue }
                if parts[0] == "watch" { return .watch }
                if parts[0] == "follow" { follow = true }
            }
        } else {
            path = target[...]
        }
        // /api/v1/watch/..., /apis/<group>/<version>/watch/...
        let segments = path.split(separator: "/")
        if segments.first == "api", segments.count > 2, segments[2] == "watch" { return .watch }
        if segments.first == "apis", segments.count > 3, segments[3] == "watch" { return .watch }
        return follow ? .follow : .regular
    }

    /// Go's `strconv.ParseBool` true values, which the apiserver uses for these parameters.
    private static func isTrue(_ value: Substring) -> Bool {
        value == "1" || value == "t" || value == "T" || value == "true" || value == "TRUE" || value == "True"
    }
}

/// The buckets of `proxyd_http_request_duration_seconds` (upper bounds in seconds): from half a millisecond,
/// where a proxied GET on a local network lands, to a minute, the apiserver's own request timeout.
enum LatencyBuckets {
    static let bounds: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]
    /// The same bounds in nanoseconds, for comparisons without floating point on the data path.
    static let boundNanos: [UInt64] = bounds.map { UInt64(($0 * 1e9).rounded()) }

    /// The bucket an observation of `nanos` falls into (`bounds.count` for `+Inf`).
    static func index(nanos: UInt64) -> Int {
        var low = 0
        var high = boundNanos.count
        while low < high {
            let mid = (low + high) / 2
            if nanos <= boundNanos[mid] { high = mid } else { low = mid + 1 }
        }
        return low
    }
}
