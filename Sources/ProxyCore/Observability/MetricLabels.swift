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

    /// Classifies an upstream request target (path and query, after API-prefix mapping). Runs once per request: a
    /// scan of the UTF-8 storage (`Span`), no allocation.
    static func classify(target: String, isUpgrade: Bool) -> RequestKind {
        if isUpgrade { return .upgrade }
        let bytes = target.utf8.span
        var question = bytes.count
        for i in bytes.indices where bytes[i] == UInt8(ascii: "?") {
            question = i
            break
        }
        var follow = false
        // Query parameters `watch=<true>` and `follow=<true>`.
        var start = question + 1
        while start < bytes.count {
            var end = start
            var equals = -1
            while end < bytes.count && bytes[end] != UInt8(ascii: "&") {
                if equals < 0 && bytes[end] == UInt8(ascii: "=") { equals = end }
                end += 1
            }
            if equals > start, isTrue(bytes, equals + 1, end) {
                if equal(bytes, start, equals, Self.watchBytes) { return .watch }
                if equal(bytes, start, equals, Self.followBytes) { follow = true }
            }
            start = end + 1
        }
        // The legacy form: /api/v1/watch/..., /apis/<group>/<version>/watch/...: segment 3 under /api, 4 under
        // /apis.
        var segment = 0
        var segmentStart = 0
        var watchSegment = 0
        var index = 0
        while index <= question {
            if index == question || bytes[index] == UInt8(ascii: "/") {
                if index > segmentStart {
                    segment += 1
                    if segment == 1 {
                        if equal(bytes, segmentStart, index, Self.apisBytes) {
                            watchSegment = 4
                        } else if equal(bytes, segmentStart, index, Self.apiBytes) {
                            watchSegment = 3
                        } else {
                            break
                        }
                    } else if segment == watchSegment {
                        if equal(bytes, segmentStart, index, Self.watchBytes) { return .watch }
                        break
                    }
                }
                segmentStart = index + 1
            }
            index += 1
        }
        return follow ? .follow : .regular
    }

    private static let watchBytes = Array("watch".utf8)
    private static let followBytes = Array("follow".utf8)
    private static let apiBytes = Array("api".utf8)
    private static let apisBytes = Array("apis".utf8)

    /// Whether `bytes[start..<end]` is `literal`.
    private static func equal(_ bytes: Span<UInt8>, _ start: Int, _ end: Int, _ literal: [UInt8]) -> Bool {
        guard end - start == literal.count else { return false }
        for i in 0..<literal.count where bytes[start + i] != literal[i] { return false }
        return true
    }

    /// Go's `strconv.ParseBool` true values (`1`, `t`, `T`, `true`, `TRUE`, `True`), which the apiserver uses for
    /// these parameters.
    private static func isTrue(_ bytes: Span<UInt8>, _ start: Int, _ end: Int) -> Bool {
        switch end - start {
        case 1:
            let b = bytes[start]
            return b == UInt8(ascii: "1") || b == UInt8(ascii: "t") || b == UInt8(ascii: "T")
        case 4:
            let lower = (bytes[start] | 0x20, bytes[start + 1] | 0x20, bytes[start + 2] | 0x20, bytes[start + 3] | 0x20)
            guard lower == (UInt8(ascii: "t"), UInt8(ascii: "r"), UInt8(ascii: "u"), UInt8(ascii: "e")) else { return false }
            // Only the three spellings Go accepts: all lower, all upper, or capitalised.
            let upperTail = bytes[start + 1] & 0x20 == 0
            return (bytes[start + 2] & 0x20 == 0) == upperTail && (bytes[start + 3] & 0x20 == 0) == upperTail
                && (bytes[start] & 0x20 == 0 || !upperTail)
        default:
            return false
        }
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
