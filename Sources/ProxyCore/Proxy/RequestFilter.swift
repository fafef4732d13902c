import FoundationEssentials

/// kubectl proxy's request filter (`FilterServer`), with its defaults and order of checks:
/// reject-paths first, then reject-methods, then accept-paths and accept-hosts must both match.
///
/// Patterns are comma-separated, unanchored regular expressions; an empty list matches nothing.
/// One deliberate difference from kubectl: the Host header's port is removed *without* removing IPv6 brackets,
/// so the default `^\[::1\]$` accepts `Host: [::1]:8001` (kubernetes/kubernetes#77496).
public struct RequestFilter: Sendable {
    public static let defaultAcceptHosts = #"^localhost$,^127\.0\.0\.1$,^\[::1\]$"#
    public static let defaultAcceptPaths = "^.*"
    public static let defaultRejectPaths = "^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach"
    public static let defaultRejectMethods = "^$"

    let acceptHosts: PatternList
    let acceptPaths: PatternList
    let rejectPaths: PatternList
    let rejectMethods: PatternList

    /// - Throws: `FilterError` naming the flag and the pattern that does not compile.
    public init(
        acceptHosts: String = RequestFilter.defaultAcceptHosts,
        acceptPaths: String = RequestFilter.defaultAcceptPaths,
        rejectPaths: String = RequestFilter.defaultRejectPaths,
        rejectMethods: String = RequestFilter.defaultRejectMethods
    ) throws(FilterError) {
        self.acceptHosts = try PatternList(acceptHosts, flag: "accept-hosts")
        self.acceptPaths = try PatternList(acceptPaths, flag: "accept-paths")
        self.rejectPaths = try PatternList(rejectPaths, flag: "reject-paths")
        self.rejectMethods = try PatternList(rejectMethods, flag: "reject-methods")
    }

    /// - Parameters:
    ///   - method: the request method, case as sent.
    ///   - path: the *decoded* path after API-prefix stripping.
    ///   - host: the Host header value (or the host of an absolute-form target), port included.
    public func accepts(method: String, path: String, host: String) -> Bool {
        if rejectPaths.matches(path) { return false }
        if rejectMethods.matches(method) { return false }
        return acceptPaths.matches(path) && acceptHosts.matches(Self.hostWithoutPort(host))
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

/// A flag's regular expression failed to compile.
public struct FilterError: Error, CustomStringConvertible {
    public let flag: String
    public let pattern: String
    public let reason: String
    public var description: String { "--\(flag): error compiling regular expression \"\(pattern)\": \(reason)" }
}

/// A comma-separated list of unanchored regular expressions, as kubectl's `MakeRegexpArray`, checked at start-up.
/// Matching uses Swift `Regex` (no ICU); kubectl's RE2 patterns (`^…$`, classes, alternation, `(?i)`) mean the same
/// here. `Regex` values are not `Sendable`, so each event loop compiles its own (`compiled()`, in
/// `RequestFilterCache`).
struct PatternList: Sendable {
    let patterns: [String]

    init(_ list: String, flag: String) throws(FilterError) {
        guard !list.isEmpty else {
            patterns = []
            return
        }
        var out: [String] = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            // An empty element (a trailing comma) matches everything, as an empty RE2 pattern does in kubectl.
            let pattern = part.isEmpty ? "(?:)" : String(part)
            do {
                _ = try Regex(pattern)
            } catch {
                throw FilterError(flag: flag, pattern: pattern, reason: "\(error)")
            }
            out.append(pattern)
        }
        patterns = out
    }

    /// The compiled expressions (all compiled once in `init` already, so this cannot fail).
    func compiled() -> CompiledPatterns {
        CompiledPatterns(expressions: patterns.compactMap { try? Regex($0) })
    }

    /// Compiles and matches: for one-off checks; the proxy uses a loop's `RequestFilterCache`.
    func matches(_ s: String) -> Bool { compiled().matches(s) }
}

/// A `PatternList` compiled for one event loop.
struct CompiledPatterns {
    let expressions: [Regex<AnyRegexOutput>]

    func matches(_ s: String) -> Bool {
        expressions.contains { (try? $0.firstMatch(in: s)) != nil }
    }
}

/// Per-loop memo of filter verdicts: hosts and methods repeat on nearly every request, and paths often do, so the
/// regular expressions run once per distinct value instead of once per request. Bounded; emptied when full.
/// Confined to one loop (no locks).
final class RequestFilterCache {
    static let capacity = 1024

    let filter: RequestFilter
    private var hostAccepted: [String: Bool] = [:]
    private var methodRejected: [String: Bool] = [:]
    /// Per decoded path: `true` = rejected by reject-paths, `false` = not rejected; and accept-paths separately.
    private var pathRejected: [String: Bool] = [:]
    private var pathAccepted: [String: Bool] = [:]

    private let acceptHosts: CompiledPatterns
    private let acceptPaths: CompiledPatterns
    private let rejectPaths: CompiledPatterns
    private let rejectMethods: CompiledPatterns

    init(filter: RequestFilter) {
        self.filter = filter
        acceptHosts = filter.acceptHosts.compiled()
        acceptPaths = filter.acceptPaths.compiled()
        rejectPaths = filter.rejectPaths.compiled()
        rejectMethods = filter.rejectMethods.compiled()
    }

    /// Same answer as `RequestFilter.accepts`, in the same order of checks.
    func accepts(method: String, path: String, host: String) -> Bool {
        if memo(&pathRejected, path, rejectPaths.matches) { return false }
        if memo(&methodRejected, method, rejectMethods.matches) { return false }
        guard memo(&pathAccepted, path, acceptPaths.matches) else { return false }
        return memo(&hostAccepted, host) { [acceptHosts] in acceptHosts.matches(RequestFilter.hostWithoutPort($0)) }
    }

    private func memo(_ table: inout [String: Bool], _ key: String, _ compute: (String) -> Bool) -> Bool {
        if let known = table[key] { return known }
        let value = compute(key)
        if table.count >= Self.capacity { table.removeAll(keepingCapacity: true) }
        table[key] = value
        return value
    }
}
