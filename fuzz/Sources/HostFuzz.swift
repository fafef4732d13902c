@testable import ProxyCore

/// Host/authority and request-target parsing, and the path routing that follows.
///
/// Input: a control byte (bits 0–1: the API prefix), then text (decoded as UTF-8, as the request parser does).
/// Checks:
/// - `RequestFilter.hostWithoutPort` returns a prefix of the Host value, removes only a `:port`, and is idempotent;
/// - `RequestTarget` splits origin-form and absolute-form targets so that they join back to the input;
/// - `PathRouter.route` never forwards a path that, decoded as the apiserver decodes it, holds a `.`/`..` segment
///   or leaves the API prefix, and its redirects reach a final answer within two hops.
enum HostFuzz {
    static let prefixes = ["/", "/api/", "/custom/", "/a/b/"]

    static func run(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let control = input.byte()
        let text = String(decoding: input.rest(), as: UTF8.self)

        checkHost(text)
        checkTarget(text, router: PathRouter(apiPrefix: prefixes[Int(control & 3)]))
    }

    static func checkHost(_ host: String) {
        let stripped = RequestFilter.hostWithoutPort(host)
        require(host.hasPrefix(stripped), "hostWithoutPort(\(host.debugDescription)) = \(stripped.debugDescription)")
        if stripped != host {
            let removed = host.dropFirst(stripped.count)
            require(removed.first == ":", "hostWithoutPort removed \(removed.debugDescription) from \(host.debugDescription)")
            if host.hasPrefix("[") {
                require(removed.dropFirst().allSatisfy { $0.isASCII && $0.isNumber },
                        "hostWithoutPort removed \(removed.debugDescription) from \(host.debugDescription)")
            }
        }
        require(RequestFilter.hostWithoutPort(stripped) == stripped,
                "hostWithoutPort is not idempotent on \(host.debugDescription)")
    }

    static func checkTarget(_ text: String, router: PathRouter) {
        guard let target = RequestTarget(text) else { return }
        require(target.rawPath.hasPrefix("/"), "path without a leading slash: \(target)")
        let pathAndQuery = target.rawPath + (target.rawQuery.map { "?" + $0 } ?? "")
        if let host = target.host {
            require(!host.contains("@") && !host.contains("/") && !host.contains("?"), "bad host in \(target)")
            let lower = text.lowercased()
            let scheme = lower.hasPrefix("https://") ? 8 : 7
            let rest = String(text.dropFirst(scheme + host.count))
            require(rest == pathAndQuery || "/" + rest == pathAndQuery,
                    "absolute-form target does not join back: \(text.debugDescription) → \(target)")
        } else {
            require(pathAndQuery == text, "origin-form target does not join back: \(text.debugDescription) → \(target)")
        }
        checkRoute(router.route(rawPath: target.rawPath, rawQuery: target.rawQuery), router: router, depth: 0)
    }

    static func checkRoute(_ decision: PathRouter.Decision, router: PathRouter, depth: Int) {
        switch decision {
        case .forward(let upstreamTarget, let filterPath):
            let path = upstreamTarget.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
            guard let decoded = PercentEncoding.decode(String(path)) else {
                return require(false, "forwarded an undecodable path \(upstreamTarget.debugDescription)")
            }
            let segments = decoded.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            require(decoded.hasPrefix("/") && !segments.contains(".") && !segments.contains(".."),
                    "forwarded a dot segment: \(upstreamTarget.debugDescription)")
            require(PathRouter.cleanPath(filterPath) == filterPath, "filter path not clean: \(filterPath.debugDescription)")
            if router.apiPrefix.hasPrefix("/api") {
                require(decoded.hasPrefix(router.apiPrefix), "forwarded outside the prefix: \(decoded.debugDescription)")
            }
        case .redirect(let location):
            // At most two hops: the cleaned path, then the bare prefix's slash form ("/./custom" → "/custom" → "/custom/").
            require(depth < 2, "redirects do not converge: \(location.debugDescription)")
            guard let target = RequestTarget(location) else {
                return require(false, "redirect to an unparsable target \(location.debugDescription)")
            }
            checkRoute(router.route(rawPath: target.rawPath, rawQuery: target.rawQuery), router: router, depth: depth + 1)
        case .notFound, .badRequest:
            break
        }
    }
}
