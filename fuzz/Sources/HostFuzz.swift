@testable import ProxyCore

/// Host/authority and request-target parsing, and the routing that follows.
///
/// Input: a control byte (bits 0–1: the API prefix), then text (decoded as UTF-8, as the request parser does),
/// used as a Host value and as a request-target; when it holds a space, the part before it is the Host and the rest
/// the request-target of a routed request.
/// Checks:
/// - `HostAuthority.parse` (the strict Host parser): an accepted value is `host[:port]` joined back exactly, with an
///   all-digit port up to 65535 and no `@`; `HostClass.classify` names a `*.svc.localhost`/`*.pod.localhost`
///   target only for a host that its `ProxyTarget.hostName` spells again (lower case), and parses that name back
///   to the same target;
/// - `RequestRouter.route` on a service or pod host forwards only below that target's proxy path, never a dot
///   segment, and on an ordinary host follows `PathRouter`;
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

        let paths = PathRouter(apiPrefix: prefixes[Int(control & 3)])
        checkHost(text)
        checkAuthority(text)
        checkTarget(text, router: paths)
        if let space = text.firstIndex(of: " ") {
            let host = String(text[..<space]), target = String(text[text.index(after: space)...])
            checkAuthority(host)
            checkRequestRoute(host: host, target: target, router: RequestRouter(paths: paths, staticFiles: nil))
        }
    }

    static func checkAuthority(_ value: String) {
        switch HostAuthority.parse(value) {
        case .failure(let error):
            require(!error.reason.isEmpty, "empty Host error for \(value.debugDescription)")
            if case .invalid = HostClass.classify(value) {} else {
                require(false, "classify accepted \(value.debugDescription), which parse refused")
            }
        case .success(let authority):
            let joined = String(authority.host) + (authority.port.map { ":" + $0 } ?? "")
            require(joined == value, "Host \(value.debugDescription) parsed as \(authority)")
            require(!value.utf8.contains(UInt8(ascii: "@")), "userinfo accepted in \(value.debugDescription)")
            if let port = authority.port {
                require(port.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && (port.isEmpty || Int(port)! <= 65535),
                        "port \(port.debugDescription) accepted")
            }
            switch HostClass.classify(value) {
            case .ordinary(let again):
                require(again == authority, "classify and parse disagree on \(value.debugDescription)")
            case .target(let target, let again):
                require(again == authority, "classify and parse disagree on \(value.debugDescription)")
                require(target.hostName == authority.host.lowercased(),
                        "target \(target) spells \(target.hostName), not \(authority.host)")
                require(TargetHostName.parse(Substring(target.hostName)) == .target(target),
                        "\(target.hostName) does not parse back to \(target)")
            case .invalid(let reason):
                require(!reason.isEmpty, "empty reason")
            }
        }
    }

    static func checkRequestRoute(host: String, target text: String, router: RequestRouter) {
        guard let target = RequestTarget(text) else { return }
        let hostClass = HostClass.classify(host)
        let decision = router.route(method: "GET", target: target, host: hostClass, headers: HTTPHeaders())
        switch decision {
        case .forward(let upstreamTarget, let filterPath, let proxyTarget):
            requireNoDotSegment(upstreamTarget)
            if case .target(let expected, _) = hostClass {
                require(proxyTarget == expected, "forwarded for \(String(describing: proxyTarget)), host names \(expected)")
                let path = upstreamTarget.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
                require(ProxyTarget.path(path, isUnder: expected.proxyPath)
                            && ProxyTarget.path(filterPath, isUnder: expected.proxyPath),
                        "service host \(host.debugDescription) forwarded \(upstreamTarget.debugDescription) (filter \(filterPath.debugDescription))")
            } else {
                require(proxyTarget == nil, "target \(String(describing: proxyTarget)) on an ordinary host")
            }
        case .invalidHost:
            if case .invalid = hostClass {} else { require(false, "invalidHost for a valid host \(host.debugDescription)") }
        default:
            break
        }
    }

    /// Decoded as the apiserver decodes it and split on the byte "/" (as Go splits, not on Swift Characters), the
    /// path of `upstreamTarget` starts with "/" and has no `.` or `..` segment.
    static func requireNoDotSegment(_ upstreamTarget: String) {
        let path = upstreamTarget.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard let decoded = PercentEncoding.decode(String(path)) else {
            return require(false, "forwarded an undecodable path \(upstreamTarget.debugDescription)")
        }
        let segments = decoded.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        require(decoded.utf8.first == UInt8(ascii: "/")
                    && !segments.contains { $0.elementsEqual(".".utf8) || $0.elementsEqual("..".utf8) },
                "forwarded a dot segment: \(upstreamTarget.debugDescription)")
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
            requireNoDotSegment(upstreamTarget)
            let decoded = PercentEncoding.decode(String(upstreamTarget.split(separator: "?", maxSplits: 1,
                                                                             omittingEmptySubsequences: false)[0])) ?? ""
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
