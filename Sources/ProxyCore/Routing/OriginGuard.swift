/// The cross-origin guard: no web page may use the proxy's credentials unless the person asked for it.
///
/// A request is cross-origin when its `Origin` is not the proxy's own origin for that request, `http://` + the
/// Host the client used (host compared ASCII-case-insensitively, port 80 when absent); `Origin: null` and anything
/// that is not a plain `http://host[:port]` origin are foreign. Clients that send no `Origin` and no Fetch Metadata
/// (curl, kubectl, client libraries) are not affected.
///
/// Refused (403, never forwarded): a cross-origin upgrade (WebSocket, SPDY) or method other than GET, HEAD and
/// OPTIONS; and any `Sec-Fetch-Site: cross-site` request that is not a navigation (`Sec-Fetch-Mode: navigate` with
/// GET or HEAD). Origins matching `--accept-origins` are trusted. WebSockets are outside CORS, so this check, not the
/// browser, is what keeps a page from opening `ws://localhost:8001/api/v1/secrets?watch=1`. proxyd adds no CORS
/// headers: a cross-origin GET that is let through cannot be read by the page.
struct OriginGuard: Sendable {
    let acceptOrigins: PatternList

    init(acceptOrigins: PatternList) {
        self.acceptOrigins = acceptOrigins
    }

    /// The browser's part of a request, read from its headers.
    struct Request: Equatable, Sendable {
        var method: String
        var isUpgrade: Bool
        /// The `Origin` header (`nil` when absent; several fields are joined and so never match an origin).
        var origin: String?
        var fetchSite: String?
        var fetchMode: String?

        init(method: String, isUpgrade: Bool, origin: String?, fetchSite: String? = nil, fetchMode: String? = nil) {
            self.method = method
            self.isUpgrade = isUpgrade
            self.origin = origin
            self.fetchSite = fetchSite
            self.fetchMode = fetchMode
        }

        /// `nil` when the head has neither `Origin` nor `Sec-Fetch-Site`: nothing for the guard to look at (curl,
        /// kubectl, client libraries), found with two header scans and no allocation.
        init?(_ head: HTTPRequestHead) {
            origin = head.headers.first("origin")
            fetchSite = head.headers.first("sec-fetch-site")
            guard origin != nil || fetchSite != nil else { return nil }
            if origin != nil {
                let origins = head.headers.values("origin")
                if origins.count > 1 { origin = origins.joined(separator: ", ") }
            }
            method = head.method
            isUpgrade = head.isUpgrade
            fetchMode = head.headers.first("sec-fetch-mode")
        }
    }

    enum Decision: Equatable, Sendable {
        /// No `Origin`, or the proxy's own: nothing to say.
        case sameOrigin
        /// A foreign origin on a request the guard lets through (a GET, HEAD or OPTIONS that is not an upgrade):
        /// without CORS headers the page cannot read the answer.
        case crossOriginAllowed(origin: String)
        /// A foreign origin that `--accept-origins` trusts.
        case trusted(origin: String)
        /// 403 with this message; `origin` is `nil` when the request had none (a cross-site `no-cors` request).
        case refused(origin: String?, message: String)
    }

    /// - Parameter authority: the Host the client used (the effective one: an absolute-form target's authority).
    func decide(_ request: Request, authority: HostAuthority) -> Decision {
        if request.origin == nil && request.fetchSite == nil { return .sameOrigin }  // the cheap common case
        var foreign: String?
        if let origin = request.origin, !Self.isSameOrigin(origin, as: authority) {
            if acceptOrigins.matches(origin) { return .trusted(origin: origin) }
            foreign = origin
            let safeMethod = request.method == "GET" || request.method == "HEAD" || request.method == "OPTIONS"
            if request.isUpgrade || !safeMethod {
                let what = request.isUpgrade ? "protocol upgrade (WebSocket/SPDY)" : "\(request.method) request"
                return .refused(origin: origin, message: Self.refusal(what: "cross-origin \(what)", origin: origin))
            }
        }
        if let site = request.fetchSite, site.equalsIgnoringASCIICase("cross-site") {
            let navigation = (request.fetchMode ?? "").equalsIgnoringASCIICase("navigate")
                && (request.method == "GET" || request.method == "HEAD") && !request.isUpgrade
            if !navigation {
                let what = "cross-site \(request.method) request that is not a navigation (Sec-Fetch-Site: cross-site)"
                return .refused(origin: request.origin, message: Self.refusal(what: what, origin: request.origin))
            }
        }
        if let foreign { return .crossOriginAllowed(origin: foreign) }
        return .sameOrigin
    }

    /// Whether `origin` is `http://` + the same host and port as `authority` (RFC 6454 serialization).
    static func isSameOrigin(_ origin: String, as authority: HostAuthority) -> Bool {
        let scheme = "http://"
        guard origin.utf8.count > scheme.utf8.count,
            String(origin.prefix(scheme.count)).equalsIgnoringASCIICase(scheme)
        else { return false }
        guard case .success(let parsed) = HostAuthority.parse(String(origin.dropFirst(scheme.count))) else {
            return false  // a path, userinfo or anything else that is not host[:port]
        }
        guard parsed.port != "" else { return false }  // "http://host:" is not a serialized origin
        return String(parsed.host).equalsIgnoringASCIICase(String(authority.host))
            && parsed.effectivePort == authority.effectivePort
    }

    /// The 403 message: names the origin and the flag that allows it.
    static func refusal(what: String, origin: String?) -> String {
        guard let origin else {
            return "proxyd refused a \(what) from a page with no Origin header; only requests from origins "
                + "allowed with --accept-origins may do this"
        }
        var message = "proxyd refused a \(what) from origin \(jsonQuoted(origin)): a web page may not use the "
            + "proxy's credentials"
        if let pattern = suggestedPattern(for: origin) {
            message += "; if you trust this origin, start proxyd with --accept-origins='\(pattern)'"
        } else {
            message += "; origins you trust can be allowed with --accept-origins"
        }
        return message
    }

    /// `^http://app\.example\.com$` for a plain origin; `nil` for anything a shell or pattern would misread.
    static func suggestedPattern(for origin: String) -> String? {
        guard origin != "null",
            origin.utf8.allSatisfy({ $0.isLowerAlphanumeric || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
                || ":/.-[]".utf8.contains($0) })
        else { return nil }
        var pattern = "^"
        for c in origin {
            if c == "." || c == "[" || c == "]" { pattern.append("\\") }
            pattern.append(c)
        }
        return pattern + "$"
    }
}
