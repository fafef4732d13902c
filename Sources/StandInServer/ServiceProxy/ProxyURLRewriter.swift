/// Rewrites one URL found in a backend's response (an HTML attribute or a `Location` header) the way a Kubernetes
/// apiserver's service and pod proxy does (k8s.io/apimachinery `pkg/util/proxy`, `Transport.rewriteURL`), so the
/// link leads back through the proxy path:
///
/// - a URL at another host, or a relative one (`about`, `#top`, `mailto:x`, `?q=1`), is left as it is;
/// - an absolute path (`/about`), or an absolute URL at the backend's own address, becomes the path
///   `<pathPrepend>/about` (scheme and host dropped, since the apiserver's own request URL has neither);
/// - an absolute URL at the Host the request came in with (the apiserver's address) keeps scheme and host and gets
///   the prefix in its path;
/// - a path that already starts with the prefix is not prefixed again (scheme and host are still dropped);
/// - joining cleans the path like Go's `path.Join` (`.`, `..` and doubled slashes), keeping a trailing slash.
///
/// Values that do not parse as a URL are returned unchanged, as the apiserver skips them.
public struct ProxyURLRewriter: Sendable, Equatable {
    /// `/api/v1/namespaces/<ns>/services/<name>/proxy`, as it appeared in the request.
    public var pathPrepend: String
    /// `host:port` of the endpoint the request went to (the apiserver's `req.URL.Host`).
    public var backendHost: String
    /// The `Host` the apiserver was asked for (passed on to the backend unchanged).
    public var requestHost: String

    public init(pathPrepend: String, backendHost: String, requestHost: String) {
        self.pathPrepend = pathPrepend
        self.backendHost = backendHost
        self.requestHost = requestHost
    }

    public func rewrite(_ value: String) -> String {
        guard let url = ParsedURL(value) else { return value }
        let isDifferentHost = url.host != nil && url.host != "" && url.host != backendHost && url.host != requestHost
        let isRelative = !url.path.hasPrefix("/")
        if isDifferentHost || isRelative { return value }
        var out = url
        // The apiserver's transport has an empty scheme and host, so only a URL at the request's own Host keeps its
        // authority; everything else becomes a path.
        if url.host != requestHost {
            out.scheme = nil
            out.host = nil
            out.userinfo = nil
        }
        if !url.path.hasPrefix(pathPrepend) {
            out.path = Self.cleanJoin(pathPrepend, url.path)
            if url.path.hasSuffix("/"), !out.path.hasSuffix("/") { out.path += "/" }
        }
        return out.serialized
    }

    /// Go's `path.Join(a, b)`: the two joined by a slash, then lexically cleaned (always rooted here).
    static func cleanJoin(_ a: String, _ b: String) -> String {
        var stack: [Substring] = []
        for segment in (a + "/" + b).split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = stack.popLast()
            default: stack.append(segment)
            }
        }
        return "/" + stack.joined(separator: "/")
    }
}

/// The parts of a URL reference that the rewriter looks at, split as Go's `url.Parse` does for the values found in
/// pages (`scheme:`, `//[userinfo@]host`, path, `?query`, `#fragment`). The query and fragment are kept verbatim.
struct ParsedURL: Equatable {
    var scheme: String?
    var userinfo: String?
    /// nil when the reference has no authority; "" for `scheme:///path`.
    var host: String?
    var path: String
    /// Including the leading `?` (so `/a?` round-trips).
    var query: String
    /// Including the leading `#`.
    var fragment: String

    init?(_ value: String) {
        // Go refuses control characters (and so do we: such a value is left alone).
        if value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return nil }
        var rest = Substring(value)
        if let hash = rest.firstIndex(of: "#") {
            fragment = String(rest[hash...])
            rest = rest[..<hash]
        } else {
            fragment = ""
        }
        if let colon = rest.firstIndex(of: ":"), let first = rest.first, first.isASCII, first.isLetter,
            rest[..<colon].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") })
        {
            scheme = String(rest[..<colon])
            rest = rest[rest.index(after: colon)...]
        } else {
            scheme = nil
            // "a:b" without a valid scheme: Go's "first path segment in URL cannot contain colon".
            let firstSegment = rest.prefix { $0 != "/" && $0 != "?" }
            if firstSegment.contains(":") { return nil }
        }
        if let question = rest.firstIndex(of: "?") {
            query = String(rest[question...])
            rest = rest[..<question]
        } else {
            query = ""
        }
        if scheme != nil, !rest.hasPrefix("/") {
            // Opaque (`mailto:x`, `javascript:...`): no path the rewriter could touch.
            userinfo = nil
            host = nil
            path = ""
            return
        }
        if rest.hasPrefix("//") {
            let authorityEnd = rest.dropFirst(2).firstIndex(of: "/") ?? rest.endIndex
            var authority = rest[rest.index(rest.startIndex, offsetBy: 2)..<authorityEnd]
            if let at = authority.lastIndex(of: "@") {
                userinfo = String(authority[..<at])
                authority = authority[authority.index(after: at)...]
            } else {
                userinfo = nil
            }
            guard Self.isValidHost(authority) else { return nil }
            host = String(authority)
            rest = rest[authorityEnd...]
        } else {
            userinfo = nil
            host = nil
        }
        guard Self.hasValidEscapes(rest) else { return nil }
        path = String(rest)
    }

    /// Characters Go accepts in a host (a reg-name, an IP literal in brackets, an optional port).
    private static func isValidHost(_ host: Substring) -> Bool {
        host.allSatisfy { c in
            c.isASCII && (c.isLetter || c.isNumber || "-._~!$&'()*+,;=:[]%".contains(c))
        }
    }

    private static func hasValidEscapes(_ s: Substring) -> Bool {
        var iterator = s.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { continue }
            guard let a = iterator.next(), let b = iterator.next(), a.isHexDigit, b.isHexDigit else { return false }
        }
        return true
    }

    var serialized: String {
        var out = ""
        if let scheme { out += scheme + ":" }
        if let host {
            out += "//"
            if let userinfo { out += userinfo + "@" }
            out += host
        }
        return out + path + query + fragment
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}
