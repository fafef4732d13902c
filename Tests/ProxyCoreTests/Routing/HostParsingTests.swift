import Testing

@testable import ProxyCore

/// `Host` syntax (RFC 9110 §7.2) and the service/pod host names.
@Suite struct HostAuthorityTests {
    @Test(arguments: [
        ("localhost:8001", "localhost", "8001"),
        ("localhost", "localhost", nil),
        ("localhost:", "localhost", ""),
        ("127.0.0.1:8001", "127.0.0.1", "8001"),
        ("[::1]:8001", "[::1]", "8001"),
        ("[::1]", "[::1]", nil),
        ("[2001:db8::1]:443", "[2001:db8::1]", "443"),
        ("LocalHost:1", "LocalHost", "1"),
        ("", "", nil),
        ("a-b_c~d.e!$&'()*+,;=:0", "a-b_c~d.e!$&'()*+,;=", "0"),
        ("ex%41mple.com", "ex%41mple.com", nil),
        ("grafana.monitoring.svc.localhost:8001", "grafana.monitoring.svc.localhost", "8001"),
    ] as [(String, String, String?)])
    func validHosts(value: String, host: String, port: String?) throws {
        let parsed = try HostAuthority.parse(value).get()
        #expect(parsed.host == host[...])
        #expect(parsed.port.map(String.init) == port)
    }

    @Test(arguments: [
        ("localhost:8001@evil.example", "userinfo"),
        ("user@localhost:8001", "userinfo"),
        ("evil.example@localhost", "userinfo"),
        ("localhost:8001:8002", "more than one port"),
        ("localhost :8001", "a space"),
        ("local host", "a space"),
        ("localhost:80a", "not a number"),
        ("localhost:999999", "out of range"),
        ("localhost:65536", "out of range"),
        ("localhost/path", "the character \"/\""),
        ("localhost?q", "the character \"?\""),
        ("localhost#f", "the character \"#\""),
        ("ex%4", "%XX"),
        ("[::1", "without its"),
        ("[::1]x", "unexpected text"),
        ("[::1]:80:81", "not a number"),
        ("[not-ipv6]:80", "not an IPv6 address"),
        ("[127.0.0.1]", "not an IPv6 address"),
        ("h\u{e9}", "non-ASCII"),
        ("a\"b", "the character \"\"\""),
    ])
    func invalidHostsAreRefusedWithAReason(value: String, reasonContains: String) {
        guard case .failure(let error) = HostAuthority.parse(value) else {
            Issue.record("\(value) was accepted")
            return
        }
        #expect(error.reason.contains(reasonContains), "\(error.reason)")
    }

    @Test func effectivePortDefaultsTo80() throws {
        #expect(try HostAuthority.parse("localhost").get().effectivePort == 80)
        #expect(try HostAuthority.parse("localhost:").get().effectivePort == 80)
        #expect(try HostAuthority.parse("localhost:8001").get().effectivePort == 8001)
    }
}

@Suite struct TargetHostNameTests {
    private func target(_ host: String) -> ProxyTarget? {
        if case .target(let t, _) = HostClass.classify(host) { return t }
        return nil
    }

    private func refusal(_ host: String) -> String? {
        if case .invalid(let reason) = HostClass.classify(host) { return reason }
        return nil
    }

    struct Form: Sendable, CustomTestStringConvertible {
        var host: String
        var proxyPath: String
        var testDescription: String { host }
    }

    /// Every form of the issue's table, for services and pods.
    @Test(arguments: [
        Form(host: "grafana.monitoring.svc.localhost:8001",
             proxyPath: "/api/v1/namespaces/monitoring/services/grafana/proxy"),
        Form(host: "http.grafana.monitoring.svc.localhost:8001",
             proxyPath: "/api/v1/namespaces/monitoring/services/grafana:http/proxy"),
        Form(host: "3000.grafana.monitoring.svc.localhost:8001",
             proxyPath: "/api/v1/namespaces/monitoring/services/grafana:3000/proxy"),
        Form(host: "https--443.dashboard.kube-system.svc.localhost:8001",
             proxyPath: "/api/v1/namespaces/kube-system/services/https:dashboard:443/proxy"),
        Form(host: "https--web.dashboard.kube-system.svc.localhost",
             proxyPath: "/api/v1/namespaces/kube-system/services/https:dashboard:web/proxy"),
        Form(host: "http--8080.app.default.svc.localhost",
             proxyPath: "/api/v1/namespaces/default/services/http:app:8080/proxy"),
        Form(host: "https.dashboard.kube-system.svc.localhost",  // a port *named* https
             proxyPath: "/api/v1/namespaces/kube-system/services/dashboard:https/proxy"),
        Form(host: "web-0.default.pod.localhost:8001", proxyPath: "/api/v1/namespaces/default/pods/web-0/proxy"),
        Form(host: "8080.web-0.default.pod.localhost:8001",
             proxyPath: "/api/v1/namespaces/default/pods/web-0:8080/proxy"),
        Form(host: "https--8443.web-0.default.pod.localhost:8001",
             proxyPath: "/api/v1/namespaces/default/pods/https:web-0:8443/proxy"),
        Form(host: "metrics.web-0.default.pod.localhost", proxyPath: "/api/v1/namespaces/default/pods/web-0:metrics/proxy"),
        // Upper case folds to the (lower-case) Kubernetes names.
        Form(host: "Grafana.MONITORING.Svc.LocalHost:8001",
             proxyPath: "/api/v1/namespaces/monitoring/services/grafana/proxy"),
        Form(host: "HTTPS--WEB.Dash.KS.SVC.LOCALHOST", proxyPath: "/api/v1/namespaces/ks/services/https:dash:web/proxy"),
        Form(host: String(repeating: "a", count: 63) + ".b.svc.localhost",
             proxyPath: "/api/v1/namespaces/b/services/\(String(repeating: "a", count: 63))/proxy"),
    ])
    func everyForm(_ form: Form) throws {
        let t = try #require(target(form.host))
        #expect(t.proxyPath == form.proxyPath)
        // The canonical host name parses back to the same target.
        #expect(target(t.hostName) == t)
    }

    @Test(arguments: [
        ("grafana.monitoring.svc.localhost.", "trailing dot"),
        ("grafana.monitoring.svc.localhost.:8001", "trailing dot"),
        (String(repeating: "a", count: 64) + ".monitoring.svc.localhost", "longer than 63"),
        ("grafana." + String(repeating: "n", count: 64) + ".svc.localhost", "longer than 63"),
        ("grafana..svc.localhost", "empty label"),
        ("a..b.svc.localhost", "empty label"),
        (".grafana.monitoring.svc.localhost", "empty label"),
        ("svc.localhost:8001", "no service name"),
        ("pod.localhost", "no pod name"),
        ("grafana.svc.localhost", "1 labels"),
        ("a.b.c.d.svc.localhost", "4 labels"),
        ("gr_afana.monitoring.svc.localhost", "not a DNS label"),
        ("-grafana.monitoring.svc.localhost", "not a DNS label"),
        ("grafana-.monitoring.svc.localhost", "not a DNS label"),
        ("grafana.mon%41.svc.localhost", "not a DNS label"),
        ("grafana.monitoring*.svc.localhost", "not a DNS label"),
        ("0.grafana.monitoring.svc.localhost", "not a port number"),
        ("65536.grafana.monitoring.svc.localhost", "not a port number"),
        ("08080.grafana.monitoring.svc.localhost", "not a port number"),
        ("https--.grafana.monitoring.svc.localhost", "empty port"),
        ("web--ui.grafana.monitoring.svc.localhost", "not a port name"),
        ("a-very-long-port-name.grafana.monitoring.svc.localhost", "not a port name"),
        ("1-2.grafana.monitoring.svc.localhost", "not a port name"),  // names need a letter
        ("-web.grafana.monitoring.svc.localhost", "not a port name"),
        ("localhost:8001@grafana.monitoring.svc.localhost", "userinfo"),
    ])
    func malformedNamesAreRefusedClearly(host: String, reasonContains: String) throws {
        let reason = try #require(refusal(host), "\(host) was not refused")
        #expect(reason.contains(reasonContains), "\(reason)")
        #expect(reason.hasPrefix("invalid Host \""))
    }

    @Test(arguments: ["localhost:8001", "127.0.0.1", "[::1]:8001", "evil.localhost", "svc.localhost.evil.com",
                      "x.svc.localhostx", "example.com", ""])
    func otherHostsAreOrdinary(host: String) {
        guard case .ordinary = HostClass.classify(host) else {
            Issue.record("\(host) is not ordinary: \(HostClass.classify(host))")
            return
        }
    }

    @Test func cacheAnswersLikeClassify() {
        let cache = HostClassCache()
        for host in ["localhost:8001", "a.b.svc.localhost", "a..svc.localhost", "localhost:8001", "a.b.svc.localhost"] {
            #expect(cache.hostClass(host) == HostClass.classify(host))
        }
    }
}
