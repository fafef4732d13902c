import Testing

@testable import ProxyCore

/// Redirects and cookies of a service host keep the browser on that host.
@Suite struct TargetResponseRewriterTests {
    private static let target = ProxyTarget(kind: .service, namespace: "monitoring", name: "grafana")
    private static let prefix = "/api/v1/namespaces/monitoring/services/grafana/proxy"

    private func rewriter(basePath: String = "", target: ProxyTarget = Self.target) -> TargetResponseRewriter {
        let upstream = UpstreamTarget(scheme: "https", host: "10.0.0.1", port: 6443, authority: "10.0.0.1:6443")
        return TargetResponseRewriter(
            target: target, locations: LocationRewriter(target: upstream, router: PathRouter(serverBasePath: basePath)))
    }

    static let locationCases: [(String, String)] = [
        // The apiserver rewrote the backend's absolute path into the proxy path: back to the service host's path.
        (prefix + "/login?next=%2F", "/login?next=%2F"),
        (prefix + "/", "/"),
        (prefix, "/"),
        (prefix + "?x=1", "/?x=1"),
        // The apiserver's own origin (either scheme: it is also the Host the backend was given).
        ("https://10.0.0.1:6443" + prefix + "/login", "/login"),
        ("http://10.0.0.1:6443" + prefix + "/login", "/login"),
        ("HTTPS://10.0.0.1:6443/api/v1/namespaces/monitoring/services/grafana/proxy/a", "/a"),
        ("https://10.0.0.1:6443/login", "/login"),  // the backend's own path, not rewritten upstream
        ("https://10.0.0.1:6443", "/"),
        // A plain path stays a path on the service host.
        ("/login", "/login"),
        // Another target's proxy path is a path of this service on its host (isolation), left as it is.
        ("/api/v1/namespaces/monitoring/services/prometheus/proxy/", "/api/v1/namespaces/monitoring/services/prometheus/proxy/"),
        (prefix + "x/y", prefix + "x/y"),
    ]

    @Test(arguments: locationCases)
    func locationsStayOnTheServiceHost(location: String, expected: String) {
        #expect((rewriter().location(location) ?? location) == expected)
    }

    @Test(arguments: [
        "https://grafana.example.com/login",
        "http://10.0.0.2:3000/login",
        "//evil.example/x",
        "login",
        "../x",
        "?page=2",
        "https://10.0.0.1:6444/login",
    ])
    func otherLocationsAreLeftAlone(location: String) {
        #expect(rewriter().location(location) == nil)
    }

    @Test func serverBasePathIsRemoved() {
        #expect(rewriter(basePath: "/k8s").location("https://10.0.0.1:6443/k8s" + Self.prefix + "/x") == "/x")
    }

    @Test func portAndSchemeFormsUseTheirOwnPrefix() {
        let t = ProxyTarget(kind: .pod, namespace: "d", name: "web", port: "8443", scheme: "https")
        #expect(rewriter(target: t).location("/api/v1/namespaces/d/pods/https:web:8443/proxy/ok") == "/ok")
        #expect(rewriter(target: t).location("/api/v1/namespaces/d/pods/web/proxy/ok") == "/api/v1/namespaces/d/pods/web/proxy/ok")
    }

    @Test(arguments: [
        ("session=abc; Domain=grafana.example.com; Path=/; HttpOnly", "session=abc; Path=/; HttpOnly"),
        ("session=abc; domain=.localhost", "session=abc"),
        ("session=abc;Domain=grafana.monitoring.svc.localhost;Secure", "session=abc;Secure"),
        ("a=b; Path=\(prefix)/; SameSite=Lax", "a=b; Path=/; SameSite=Lax"),
        ("a=b; path=\(prefix)/sub", "a=b; Path=/sub"),
        ("a=b; Path=\(prefix)", "a=b; Path=/"),
        ("a=b; Expires=Wed, 21 Oct 2030 07:28:00 GMT; Domain=x", "a=b; Expires=Wed, 21 Oct 2030 07:28:00 GMT"),
    ])
    func cookiesBelongToTheServiceHost(cookie: String, expected: String) {
        #expect(rewriter().setCookie(cookie) == expected)
    }

    @Test(arguments: ["a=b", "a=b; Path=/", "a=b; Path=/api/v1/namespaces/x/services/y/proxy/", "domain=x; Path=/",
                      "a=b; HttpOnly; Max-Age=10"])
    func cookiesWithoutDomainOrProxyPathAreUnchanged(cookie: String) {
        #expect(rewriter().setCookie(cookie) == nil)
    }

    @Test func headersAreRewrittenInPlace() {
        var headers = HTTPHeaders([
            ("Content-Type", "text/html"), ("Set-Cookie", "a=1; Domain=x"), ("Location", Self.prefix + "/next"),
            ("set-cookie", "b=2"), ("Set-Cookie", "c=3; Domain=y; Path=/"),
        ])
        rewriter().rewrite(&headers)
        #expect(headers == HTTPHeaders([
            ("Content-Type", "text/html"), ("Set-Cookie", "a=1"), ("Location", "/next"), ("set-cookie", "b=2"),
            ("Set-Cookie", "c=3; Path=/"),
        ]))
        var untouched = HTTPHeaders([("Location", "https://example.com/"), ("Set-Cookie", "a=1")])
        rewriter().rewrite(&untouched)
        #expect(untouched == HTTPHeaders([("Location", "https://example.com/"), ("Set-Cookie", "a=1")]))
    }
}
