/// kubectl proxy's request filter (`FilterServer`), with its defaults and order of checks:
/// reject-paths first, then reject-methods, then accept-paths and accept-hosts must both match; then proxyd's
/// cross-origin guard (`OriginGuard`, `--accept-origins`). `--disable-filter` turns all of them off.
///
/// Patterns are comma-separated, unanchored regular expressions; an empty list matches nothing.
/// Deliberate differences from kubectl: the Host header's port is removed *without* removing IPv6 brackets,
/// so the default `^\[::1\]$` accepts `Host: [::1]:8001` (kubernetes/kubernetes#77496); and the default hosts
/// also accept the service and pod hosts `*.svc.localhost` / `*.pod.localhost`, which no DNS can rebind
/// (browsers resolve `*.localhost` to loopback themselves, RFC 6761).
public struct RequestFilter: Sendable {
    public static let defaultAcceptHosts = #"^localhost$,^127\.0\.0\.1$,^\[::1\]$,(?i)\.(svc|pod)\.localhost$"#
    public static let defaultAcceptPaths = "^.*"
    /// kubectl's two patterns, plus the kubelet's exec-like endpoints behind the apiserver's node proxy (a deliberate
    /// difference): `nodes/<node>/proxy/{exec,run,attach,portForward,cri}`. Paths are matched decoded and clean
    /// (`PathRouter` redirects any other form first), which is what the apiserver passes on: it decodes the path and
    /// `path.Join`s the rest after `proxy/` onto the kubelet URL. The kubelet's names are matched ignoring case.
    public static let defaultRejectPaths = "^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach,"
        + "^/api/v1/nodes/[^/]+/proxy/(?i:exec|run|attach|portforward|cri)(?:/|$)"
    public static let defaultRejectMethods = "^$"
    /// No origin is trusted by default.
    public static let defaultAcceptOrigins = ""

    let acceptHosts: PatternList
    let acceptPaths: PatternList
    let rejectPaths: PatternList
    let rejectMethods: PatternList
    let originGuard: OriginGuard

    /// - Throws: `FilterError` naming the flag and the pattern that does not compile.
    public init(
        acceptHosts: String = RequestFilter.defaultAcceptHosts,
        acceptPaths: String = RequestFilter.defaultAcceptPaths,
        rejectPaths: String = RequestFilter.defaultRejectPaths,
        rejectMethods: String = RequestFilter.defaultRejectMethods,
        acceptOrigins: String = RequestFilter.defaultAcceptOrigins
    ) throws(FilterError) {
        self.acceptHosts = try PatternList(acceptHosts, flag: "accept-hosts")
        self.acceptPaths = try PatternList(acceptPaths, flag: "accept-paths")
        self.rejectPaths = try PatternList(rejectPaths, flag: "reject-paths")
        self.rejectMethods = try PatternList(rejectMethods, flag: "reject-methods")
        originGuard = OriginGuard(acceptOrigins: try PatternList(acceptOrigins, flag: "accept-origins"))
    }

    /// - Parameters:
    ///   - method: the request method, case as sent.
    ///   - path: the *decoded* path after API-prefix stripping.
    ///   - host: the Host header value (or the host of an absolute-form target), port included.
    public func accepts(method: String, path: String, host: String) -> Bool {
        verdict(method: method, path: path, host: host) == .accept
    }

    /// kubectl's checks, naming the one that rejected (the origin guard is `OriginGuard.decide`).
    public func verdict(method: String, path: String, host: String) -> FilterVerdict {
        if rejectPaths.matches(path) { return .reject(.path) }
        if rejectMethods.matches(method) { return .reject(.method) }
        if !acceptPaths.matches(path) { return .reject(.path) }
        return acceptHosts.matches(Self.hostWithoutPort(host)) ? .accept : .reject(.host)
    }

    /// Removes a trailing `:port`, keeping IPv6 brackets: `[::1]:8001` → `[::1]`, `localhost:1` → `localhost`,
    /// `::1` (not bracketed, ambiguous) stays as it is, like Go's `SplitHostPort` failure path.
    static func hostWithoutPort(_ host: String) -> String {
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return host }
            let rest = host[host.index(after: close)...]
            if rest.isEmpty || (rest.first == ":" && rest.dropFirst().allSatisfy(\.isASCIIDigitChar)) {
                return String(host[...close])
            }
            return host
        }
        let colons = host.utf8.count(where: { $0 == UInt8(ascii: ":") })
        if colons == 1, let idx = host.firstIndex(of: ":") {
            return String(host[..<idx])
        }
        return host
    }
}

extension Character {
    fileprivate var isASCIIDigitChar: Bool { isASCII && isNumber }
}

/// What the filter decided, and which of its checks refused a request (for logs and per-filter counters).
public enum FilterVerdict: Equatable, Sendable {
    case accept
    case reject(FilterRule)
}

/// The filter's checks: `--accept-hosts`; `--accept-paths`/`--reject-paths`; `--reject-methods`; the cross-origin
/// guard (`--accept-origins`).
public enum FilterRule: String, Sendable, CaseIterable {
    case host, path, method, origin
}

/// A flag's regular expression failed to compile.
public struct FilterError: Error, CustomStringConvertible {
    public let flag: String
    public let pattern: String
    public let reason: String
    public var description: String { "--\(flag): error compiling regular expression \"\(pattern)\": \(reason)" }
}

/// A comma-separated list of unanchored regular expressions, as kubectl's `MakeRegexpArray`, compiled once at
/// start-up. The patterns are Go RE2 syntax, compiled by `RE2Pattern` (linear-time matching, Go's error texts);
/// the compiled lists are immutable and shared by all event loops.
struct PatternList: Sendable {
    let expressions: [RE2Pattern]

    init(_ list: String, flag: String) throws(FilterError) {
        guard !list.isEmpty else {
            expressions = []
            return
        }
        var out: [RE2Pattern] = []
        // An empty element (a trailing comma) is the empty pattern, which matches everything, as in kubectl.
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            let pattern = String(part)
            do {
                out.append(try RE2Pattern(pattern))
            } catch {
                throw FilterError(flag: flag, pattern: pattern, reason: error.description)
            }
        }
        expressions = out
    }

    func matches(_ s: String) -> Bool {
        expressions.contains { $0.matches(s) }
    }
}

/// Per-loop memo of filter verdicts: hosts and methods repeat on nearly every request, and paths often do, so the
/// regular expressions run once per distinct value instead of once per request. Bounded; emptied when full.
/// Confined to one loop (no locks); the compiled patterns themselves are shared (`RequestFilter` is `Sendable`).
final class RequestFilterCache {
    static let capacity = 1024

    let filter: RequestFilter
    private var hostAccepted: [String: Bool] = [:]
    private var methodRejected: [String: Bool] = [:]
    /// Per decoded path: `true` = rejected by reject-paths, `false` = not rejected; and accept-paths separately.
    private var pathRejected: [String: Bool] = [:]
    private var pathAccepted: [String: Bool] = [:]

    init(filter: RequestFilter) {
        self.filter = filter
    }

    /// Same answer as `RequestFilter.accepts`, in the same order of checks.
    func accepts(method: String, path: String, host: String) -> Bool {
        verdict(method: method, path: path, host: host) == .accept
    }

    /// Same answer as `RequestFilter.verdict`, in the same order of checks.
    func verdict(method: String, path: String, host: String) -> FilterVerdict {
        if memo(&pathRejected, path, filter.rejectPaths.matches) { return .reject(.path) }
        if memo(&methodRejected, method, filter.rejectMethods.matches) { return .reject(.method) }
        guard memo(&pathAccepted, path, filter.acceptPaths.matches) else { return .reject(.path) }
        let hostAccepted = memo(&hostAccepted, host) { [filter] in
            filter.acceptHosts.matches(RequestFilter.hostWithoutPort($0))
        }
        return hostAccepted ? .accept : .reject(.host)
    }

    /// Every check: kubectl's first, then the cross-origin guard (`browser` is `nil` for a request without
    /// `Origin` or Fetch Metadata: nothing more to check). `origin` tells the guard's decision even when the
    /// verdict is `accept` (a cross-origin GET let through is logged).
    func check(
        method: String, path: String, host: String, browser: OriginGuard.Request?, authority: HostAuthority
    ) -> (verdict: FilterVerdict, origin: OriginGuard.Decision) {
        let verdict = verdict(method: method, path: path, host: host)
        guard verdict == .accept, let browser else { return (verdict, .sameOrigin) }
        let origin = filter.originGuard.decide(browser, authority: authority)
        if case .refused = origin { return (.reject(.origin), origin) }
        return (.accept, origin)
    }

    private func memo(_ table: inout [String: Bool], _ key: String, _ compute: (String) -> Bool) -> Bool {
        if let known = table[key] { return known }
        let value = compute(key)
        if table.count >= Self.capacity { table.removeAll(keepingCapacity: true) }
        table[key] = value
        return value
    }
}
