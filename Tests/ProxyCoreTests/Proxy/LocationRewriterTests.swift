import Testing

@testable import ProxyCore

@Suite struct LocationRewriterTests {
    private func target(_ scheme: String = "https", host: String = "10.0.0.1", port: UInt16 = 6443) -> UpstreamTarget {
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        return UpstreamTarget(scheme: scheme, host: host, port: port, basePath: "", authority: authority, tls: TLSConfiguration())
    }

    @Test(arguments: [
        // (location, api prefix, server base path, expected)
        ("https://10.0.0.1:6443/api/v1/namespaces", "/", "", "/api/v1/namespaces"),
        ("https://10.0.0.1:6443/api/v1/namespaces/a/services/s/proxy/x?y=1", "/", "", "/api/v1/namespaces/a/services/s/proxy/x?y=1"),
        ("HTTPS://10.0.0.1:6443/x", "/", "", "/x"),
        ("https://10.0.0.1:6443", "/", "", "/"),
        ("https://10.0.0.1:6443/api/v1/pods", "/custom/", "", "/custom/api/v1/pods"),
        ("https://10.0.0.1:6443/api/v1/pods", "/api/", "", "/api/v1/pods"),  // /api prefixes are not stripped
        ("https://10.0.0.1:6443/base/api/v1/pods", "/", "/base", "/api/v1/pods"),
        ("https://10.0.0.1:6443/based/x", "/", "/base", "/based/x"),
    ])
    func apiserverLocationsPointAtTheProxy(location: String, prefix: String, base: String, expected: String) {
        let rewriter = LocationRewriter(target: target(), router: PathRouter(apiPrefix: prefix, serverBasePath: base))
        #expect(rewriter.rewrite(location) == expected)
    }

    @Test(arguments: [
        "/api/v1/namespaces",  // already relative: the browser stays on the proxy
        "relative/path",
        "https://example.com/api",
        "https://10.0.0.1:6444/api",  // another port
        "http://10.0.0.1:6443/api",  // another scheme
        "https://10.0.0.10:6443/api",
    ])
    func otherLocationsAreLeftAlone(location: String) {
        let rewriter = LocationRewriter(target: target(), router: PathRouter())
        #expect(rewriter.rewrite(location) == nil)
    }

    @Test func defaultPortAndIPv6() {
        let r443 = LocationRewriter(target: target(host: "api.example", port: 443), router: PathRouter())
        #expect(r443.rewrite("https://api.example/x") == "/x")
        #expect(r443.rewrite("https://api.example:443/x") == "/x")
        let v6 = LocationRewriter(target: target(host: "::1", port: 6443), router: PathRouter())
        #expect(v6.rewrite("https://[::1]:6443/api") == "/api")
    }
}
