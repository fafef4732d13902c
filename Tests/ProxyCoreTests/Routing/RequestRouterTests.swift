import Testing

@testable import ProxyCore

/// The one place where a request's target is decided: Host + path in, decision out.
@Suite struct RequestRouterTests {
    private func route(
        _ target: String, method: String = "GET", host: String = "localhost:8001",
        headers: [(String, String)] = [], router: RequestRouter = RequestRouter(paths: PathRouter(), staticFiles: nil)
    ) throws -> RouteDecision {
        let parsed = try #require(RequestTarget(target))
        return router.route(method: method, target: parsed, host: HostClass.classify(parsed.host ?? host),
                            headers: HTTPHeaders(headers))
    }

    private static let grafana = ProxyTarget(kind: .service, namespace: "monitoring", name: "grafana")
    private static let grafanaPrefix = "/api/v1/namespaces/monitoring/services/grafana/proxy"

    @Test func serviceHostMapsEveryPathToItsTarget() throws {
        let host = "grafana.monitoring.svc.localhost:8001"
        #expect(try route("/", host: host)
            == .forward(upstreamTarget: Self.grafanaPrefix + "/", filterPath: Self.grafanaPrefix + "/", target: Self.grafana))
        #expect(try route("/d/abc?orgId=1&x=%2F", host: host)
            == .forward(upstreamTarget: Self.grafanaPrefix + "/d/abc?orgId=1&x=%2F",
                        filterPath: Self.grafanaPrefix + "/d/abc", target: Self.grafana))
        // Isolation: the API's own paths are the service's paths on its host.
        #expect(try route("/api/v1/secrets", host: host)
            == .forward(upstreamTarget: Self.grafanaPrefix + "/api/v1/secrets",
                        filterPath: Self.grafanaPrefix + "/api/v1/secrets", target: Self.grafana))
        // Raw escapes survive.
        #expect(try route("/a%2Fb", host: host)
            == .forward(upstreamTarget: Self.grafanaPrefix + "/a%2Fb", filterPath: Self.grafanaPrefix + "/a/b",
                        target: Self.grafana))
    }

    @Test func alreadyRewrittenProxyPathIsMappedOnce() throws {
        let host = "grafana.monitoring.svc.localhost:8001"
        #expect(try route(Self.grafanaPrefix + "/public/app.js?v=1", host: host)
            == .forward(upstreamTarget: Self.grafanaPrefix + "/public/app.js?v=1",
                        filterPath: Self.grafanaPrefix + "/public/app.js", target: Self.grafana))
        #expect(try route(Self.grafanaPrefix, host: host)
            == .forward(upstreamTarget: Self.grafanaPrefix, filterPath: Self.grafanaPrefix, target: Self.grafana))
        // Another target's proxy path, or a longer name, is just a path of this service.
        let other = "/api/v1/namespaces/monitoring/services/prometheus/proxy/"
        #expect(try route(other, host: host)
            == .forward(upstreamTarget: Self.grafanaPrefix + other, filterPath: Self.grafanaPrefix + other,
                        target: Self.grafana))
        #expect(try route(Self.grafanaPrefix + "x/", host: host)
            == .forward(upstreamTarget: Self.grafanaPrefix + Self.grafanaPrefix + "x/",
                        filterPath: Self.grafanaPrefix + Self.grafanaPrefix + "x/", target: Self.grafana))
        // A port in the host means the prefix with that port.
        let withPort = "/api/v1/namespaces/monitoring/services/https:grafana:443/proxy/x"
        let t = ProxyTarget(kind: .service, namespace: "monitoring", name: "grafana", port: "443", scheme: "https")
        #expect(try route(withPort, host: "https--443.grafana.monitoring.svc.localhost")
            == .forward(upstreamTarget: withPort, filterPath: withPort, target: t))
    }

    @Test func podHostAndServerBasePath() throws {
        let router = RequestRouter(paths: PathRouter(serverBasePath: "/k8s"), staticFiles: nil)
        let pod = ProxyTarget(kind: .pod, namespace: "default", name: "web-0", port: "8080")
        let prefix = "/api/v1/namespaces/default/pods/web-0:8080/proxy"
        #expect(try route("/x", host: "8080.web-0.default.pod.localhost", router: router)
            == .forward(upstreamTarget: "/k8s" + prefix + "/x", filterPath: prefix + "/x", target: pod))
    }

    @Test func dotSegmentsNeverLeaveTheTarget() throws {
        let host = "grafana.monitoring.svc.localhost:8001"
        #expect(try route("/../../../api/v1/secrets", host: host) == .redirect(location: "/api/v1/secrets"))
        #expect(try route("/a/%2E%2E/%2e%2E/b?q", host: host) == .redirect(location: "/b?q"))
        #expect(try route("/x/..%2F..%2Fsecrets", host: host) == .redirect(location: "/secrets"))
        #expect(try route("//x", host: host) == .redirect(location: "/x"))
        #expect(try route("/%zz", host: host) == .badRequest("invalid URL escape in path"))
    }

    @Test func absoluteFormTargetNamesTheHost() throws {
        #expect(try route("http://grafana.monitoring.svc.localhost:8001/x", host: "localhost:8001")
            == .forward(upstreamTarget: Self.grafanaPrefix + "/x", filterPath: Self.grafanaPrefix + "/x",
                        target: Self.grafana))
    }

    @Test func pathFormIsUnchanged() throws {
        let path = "/api/v1/namespaces/monitoring/services/grafana/proxy/x?y"
        #expect(try route(path) == .forward(upstreamTarget: path, filterPath: String(path.dropLast(2)), target: nil))
        #expect(try route("/") == .forward(upstreamTarget: "/", filterPath: "/", target: nil))
        let custom = RequestRouter(paths: PathRouter(apiPrefix: "/custom/"), staticFiles: nil)
        #expect(try route("/nope", router: custom) == .notFound)
        #expect(try route("/custom", router: custom) == .redirect(location: "/custom/"))
    }

    @Test func invalidHostsAndTraceAreRefused() throws {
        guard case .invalidHost(let reason) = try route("/api", host: "localhost:8001@evil.example") else {
            Issue.record("not refused")
            return
        }
        #expect(reason.contains("userinfo"))
        guard case .invalidHost = try route("/", host: "a..svc.localhost") else {
            Issue.record("not refused")
            return
        }
        #expect(try route("/api", method: "TRACE") == .methodNotAllowed("TRACE"))
        #expect(try route("/", method: "TRACK", host: "grafana.monitoring.svc.localhost") == .methodNotAllowed("TRACK"))
        #expect(try route("/api", method: "trace") == .forward(upstreamTarget: "/api", filterPath: "/api", target: nil))  // methods are case-sensitive
    }

    @Test func browserNavigationToTheRootGetsTheIndex() throws {
        let chromium = [("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"),
                        ("Sec-Fetch-Mode", "navigate")]
        #expect(try route("/", headers: chromium) == .serviceIndex)
        #expect(try route("/", method: "HEAD", headers: [("Sec-Fetch-Mode", "navigate")]) == .serviceIndex)
        #expect(try route("/?x=1", headers: [("Accept", "text/html")]) == .serviceIndex)
        #expect(try route("/", headers: [("Accept", "text/html;q=0.9, application/json;q=0.5")]) == .serviceIndex)
        // Everyone else gets the apiserver's answer for / as before.
        let plain = RouteDecision.forward(upstreamTarget: "/", filterPath: "/", target: nil)
        #expect(try route("/") == plain)
        #expect(try route("/", headers: [("Accept", "*/*")]) == plain)
        #expect(try route("/", headers: [("Accept", "application/json, */*")]) == plain)
        #expect(try route("/", headers: [("Accept", "application/json, text/html")]) == plain)
        #expect(try route("/", headers: [("Accept", "text/html;q=0")]) == plain)
        #expect(try route("/", headers: [("Sec-Fetch-Mode", "cors")]) == plain)
        #expect(try route("/", method: "POST", headers: chromium) == plain)
        #expect(try route("/api", headers: chromium) == .forward(upstreamTarget: "/api", filterPath: "/api", target: nil))
        // A service host's root is the service's.
        #expect(try route("/", host: "grafana.monitoring.svc.localhost", headers: chromium)
            == .forward(upstreamTarget: Self.grafanaPrefix + "/", filterPath: Self.grafanaPrefix + "/", target: Self.grafana))
    }

    @Test func staticFilesAreNotServedOnServiceHosts() throws {
        let router = RequestRouter(
            paths: PathRouter(apiPrefix: "/api/"), staticFiles: StaticFiles(directory: "/tmp", prefix: "/static/"))
        #expect(try route("/static/app.js", router: router) == .staticFile(path: "/static/app.js"))
        #expect(try route("/static/app.js", host: "grafana.monitoring.svc.localhost", router: router)
            == .forward(upstreamTarget: Self.grafanaPrefix + "/static/app.js",
                        filterPath: Self.grafanaPrefix + "/static/app.js", target: Self.grafana))
    }

    /// The fast check agrees with the full `path.Clean` on every path it accepts and every one it refuses.
    @Test(arguments: ["/", "/a", "/a/", "/a/b/c", "/a//b", "//", "/.", "/..", "/./", "/../", "/a/.", "/a/..", "/a/./b",
                      "/a/../b", "/...", "/a/.../b", "/.a", "/a./", "/..a/", "/a..", "", "a", "a/b", "/a/b/",
                      "/%2e%2e", "/é/ü", "/a/.b/..c/", "/a/b//"])
    func cleanCheckAgreesWithClean(path: String) {
        #expect(PathRouter.isClean(path) == (PathRouter.cleaned(path) == path), "\(path)")
        #expect(PathRouter.cleanPath(path) == PathRouter.cleaned(path))
    }

    @Test(arguments: [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text", "html", 1.0),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application", "json", 0.8),
        ("text/*;q=0.5, */*;q=0.1", "text", "html", 0.5),
        ("TEXT/HTML ; Q=0.7", "text", "html", 0.7),
        ("application/json", "text", "html", 0.0),
        ("", "text", "html", 0.0),
    ])
    func acceptQuality(accept: String, type: String, subtype: String, q: Double) {
        #expect(BrowserRequest.quality(of: type, subtype, in: accept) == q)
    }
}
