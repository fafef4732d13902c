/// Where a request goes: decided in one place from its method, Host and request-target, as a pure value (no
/// sockets, no I/O), before the filter and the origin guard look at it.
enum RouteDecision: Equatable, Sendable {
    /// Send upstream. `upstreamTarget` is path + query for the apiserver; `filterPath` is the decoded path the
    /// request filter checks (for a service or pod host: the full upstream path, so `--reject-paths` means the same
    /// for both forms); `target` is set on a service or pod host.
    case forward(upstreamTarget: String, filterPath: String, target: ProxyTarget?)
    /// `--www`: a (decoded, clean) path of the static tree; not filtered, as in kubectl.
    case staticFile(path: String)
    /// A browser's navigation to `/`: the service index page.
    case serviceIndex
    case redirect(location: String)
    case notFound
    case badRequest(String)
    /// Not a valid `Host` (or a malformed service/pod host): 400, then the connection closes.
    case invalidHost(String)
    /// `TRACE` and `TRACK`: 405, never forwarded (an echo would hand the added credentials to the page).
    case methodNotAllowed(String)
}

struct RequestRouter: Sendable {
    let paths: PathRouter
    let staticFiles: StaticFiles?

    /// - Parameters:
    ///   - method: the request method as sent.
    ///   - target: the parsed request-target.
    ///   - host: the classified effective host (the absolute-form target's authority, else the `Host` header).
    ///   - headers: the request headers (for `Sec-Fetch-Mode` and `Accept` on `GET /`).
    func route(method: String, target: RequestTarget, host: HostClass, headers: HTTPHeaders) -> RouteDecision {
        if case .invalid(let reason) = host { return .invalidHost(reason) }
        if method == "TRACE" || method == "TRACK" { return .methodNotAllowed(method) }
        let querySuffix = target.rawQuery.map { "?" + $0 } ?? ""
        let decoded: String
        switch PathRouter.checkedPath(rawPath: target.rawPath, querySuffix: querySuffix) {
        case .clean(let path): decoded = path
        case .answer(let decision): return RouteDecision(decision, target: nil)
        }
        if case .target(let proxyTarget, _) = host {
            return proxyTarget.route(rawPath: target.rawPath, decodedPath: decoded, querySuffix: querySuffix,
                                     serverBasePath: paths.serverBasePath)
        }
        if let staticFiles, staticFiles.claims(path: decoded, apiPrefix: paths.apiPrefix) {
            return .staticFile(path: decoded)
        }
        if decoded == "/", method == "GET" || method == "HEAD", BrowserRequest.isNavigation(headers) {
            return .serviceIndex
        }
        return RouteDecision(paths.route(rawPath: target.rawPath, cleanPath: decoded, querySuffix: querySuffix), target: nil)
    }
}

extension RouteDecision {
    init(_ decision: PathRouter.Decision, target: ProxyTarget?) {
        switch decision {
        case .forward(let upstreamTarget, let filterPath):
            self = .forward(upstreamTarget: upstreamTarget, filterPath: filterPath, target: target)
        case .redirect(let location): self = .redirect(location: location)
        case .notFound: self = .notFound
        case .badRequest(let why): self = .badRequest(why)
        }
    }
}

extension ProxyTarget {
    /// Maps a clean path on this target's host to its proxy subresource. A path that already starts with this
    /// target's own proxy path (the apiserver wrote it into the HTML it rewrote) is mapped once, not twice.
    func route(rawPath: String, decodedPath: String, querySuffix: String, serverBasePath: String) -> RouteDecision {
        let prefix = proxyPath
        var upstream: String
        var filterPath: String
        if Self.path(decodedPath, isUnder: prefix) {
            filterPath = decodedPath
            upstream = rawPath.hasPrefix(prefix) ? rawPath : PercentEncoding.encodePath(decodedPath)
        } else {
            filterPath = prefix + decodedPath
            upstream = prefix + rawPath
        }
        if !serverBasePath.isEmpty { upstream = serverBasePath + upstream }
        return .forward(upstreamTarget: upstream + querySuffix, filterPath: filterPath, target: self)
    }

    /// Whether `path` is `prefix` itself or below it (`prefix/…`), so `/…/proxyfoo` is not taken for `/…/proxy`.
    static func path(_ path: some StringProtocol, isUnder prefix: String) -> Bool {
        guard path.hasPrefix(prefix) else { return false }
        let rest = path.dropFirst(prefix.count)
        return rest.isEmpty || rest.hasPrefix("/")
    }
}

/// What a browser tells about a request (Fetch Metadata, `Accept`).
enum BrowserRequest {
    /// A navigation by a person rather than an API call: `Sec-Fetch-Mode: navigate`, or an `Accept` that ranks
    /// `text/html` above `application/json` (browsers send `text/html,…,*/*;q=0.8`; curl sends `*/*`, kubectl and
    /// client libraries `application/json`).
    static func isNavigation(_ headers: HTTPHeaders) -> Bool {
        if let mode = headers.first("sec-fetch-mode"), mode.equalsIgnoringASCIICase("navigate") { return true }
        guard let accept = headers.first("accept") else { return false }
        let html = quality(of: "text", "html", in: accept)
        return html > 0 && html > quality(of: "application", "json", in: accept)
    }

    /// The `q` an `Accept` value gives `type/subtype`, from the most specific range that matches (RFC 9110 §12.5.1).
    static func quality(of type: String, _ subtype: String, in accept: String) -> Double {
        var best: (specificity: Int, q: Double) = (-1, 0)
        for element in accept.split(separator: ",") {
            let parts = element.split(separator: ";")
            guard let range = parts.first?.withoutSurroundingSpaces() else { continue }
            let slash = range.split(separator: "/", maxSplits: 1)
            guard slash.count == 2 else { continue }
            let t = slash[0], s = slash[1]
            let specificity: Int
            if String(t).equalsIgnoringASCIICase(type) && String(s).equalsIgnoringASCIICase(subtype) {
                specificity = 2
            } else if String(t).equalsIgnoringASCIICase(type) && s == "*" {
                specificity = 1
            } else if t == "*" && s == "*" {
                specificity = 0
            } else {
                continue
            }
            var q = 1.0
            for parameter in parts.dropFirst() {
                let kv = parameter.split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0].withoutSurroundingSpaces().lowercased() == "q" {
                    q = Double(kv[1].withoutSurroundingSpaces()) ?? 0
                }
            }
            if specificity > best.specificity { best = (specificity, q) }
        }
        return best.q
    }
}

/// Per-loop memo of `HostClass.classify`: nearly every request carries one of a few `Host` values, so parsing
/// and classification run once per distinct value. Bounded (entries, and the length of a value worth keeping: no
/// DNS name is longer than 253 characters); emptied when full. Confined to one loop (no locks).
final class HostClassCache {
    static let capacity = 1024
    static let longestKept = 270
    private var classes: [String: HostClass] = [:]

    func hostClass(_ value: String) -> HostClass {
        if let known = classes[value] { return known }
        let computed = HostClass.classify(value)
        guard value.utf8.count <= Self.longestKept else { return computed }
        if classes.count >= Self.capacity { classes.removeAll(keepingCapacity: true) }
        classes[value] = computed
        return computed
    }
}
