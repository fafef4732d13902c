import Testing

@testable import ProxyCore

/// The service index page: values in, HTML out.
@Suite struct ServiceIndexPageTests {
    private static let identity = ServiceIndexIdentity(
        context: "kind-dev", cluster: "kind", user: "admin<&>", server: "https://127.0.0.1:6443")

    private func page(_ index: ServiceIndex, port: String? = "8001", prefix: String = "") -> String {
        ServiceIndexPage(identity: Self.identity, index: index, proxyPort: port, pathPrefix: prefix).html()
    }

    @Test func portsLinkToTheirHostRouteWithThePathFormBeside() {
        let index = ServiceIndex(namespaces: [
            .init(name: "monitoring", listing: .services([
                .init(name: "grafana", type: "ClusterIP", ports: [
                    .init(name: "http", port: 80, protocolName: "TCP"),
                    .init(name: nil, port: 3000, protocolName: "TCP"),
                ]),
                .init(name: "dashboard", type: "NodePort", ports: [
                    .init(name: "https", port: 443, protocolName: "TCP"),
                    .init(name: "dns", port: 53, protocolName: "UDP"),
                ]),
            ])),
        ])
        let html = page(index)
        #expect(html.contains(#"<a href="http://http.grafana.monitoring.svc.localhost:8001/">http.grafana.monitoring.svc.localhost:8001</a> <span class="quiet">http · 80/TCP</span>"#))
        #expect(html.contains(#"href="/api/v1/namespaces/monitoring/services/grafana:http/proxy/">path form</a>"#))
        #expect(html.contains(#"<a href="http://3000.grafana.monitoring.svc.localhost:8001/">3000.grafana.monitoring.svc.localhost:8001</a> <span class="quiet">3000/TCP</span>"#))
        #expect(html.contains(#"href="/api/v1/namespaces/monitoring/services/grafana:3000/proxy/""#))
        #expect(html.contains(#"<a href="http://https--https.dashboard.monitoring.svc.localhost:8001/">https--https.dashboard.monitoring.svc.localhost:8001</a>"#))
        #expect(html.contains(#"href="/api/v1/namespaces/monitoring/services/https:dashboard:https/proxy/""#))
        #expect(html.contains("53/UDP, not proxied"))
        #expect(!html.contains("dns.dashboard"))
        #expect(html.contains("NodePort"))
        // Who the proxy is, escaped.
        #expect(html.contains("<dd>kind-dev</dd>"))
        #expect(html.contains("<dd>admin&lt;&amp;&gt;</dd>"))
        #expect(html.contains("<dd>https://127.0.0.1:6443</dd>"))
        // No scripts, no external assets, readable narrow.
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains("src="))
        #expect(html.contains(#"<meta name="viewport" content="width=device-width, initial-scale=1">"#))
    }

    @Test func portlessHostAndCustomPrefix() {
        let index = ServiceIndex(namespaces: [
            .init(name: "d", listing: .services([.init(name: "s", ports: [.init(port: 8080, protocolName: "TCP")])])),
        ])
        let html = page(index, port: nil, prefix: "/custom")
        // A single unnamed port is the service's default: no port in the links.
        #expect(html.contains(#"<a href="http://s.d.svc.localhost/">s.d.svc.localhost</a> <span class="quiet">8080/TCP</span>"#))
        #expect(html.contains(#"href="/custom/api/v1/namespaces/d/services/s/proxy/""#))
        let tls = ServiceIndex(namespaces: [
            .init(name: "d", listing: .services([.init(name: "s", ports: [.init(port: 443, protocolName: "TCP")])])),
        ])
        #expect(page(tls).contains(#"<a href="http://https--443.s.d.svc.localhost:8001/">https--443.s.d.svc.localhost:8001</a>"#))
    }

    @Test func everyNameIsEscaped() {
        let evil = "<script>alert(1)</script>\"'"
        let index = ServiceIndex(
            namespaces: [
                .init(name: evil, listing: .services([.init(name: evil, type: evil, ports: [
                    .init(name: evil, port: 1, protocolName: evil),
                ])])),
                .init(name: "forbidden", listing: .unavailable(evil)),
            ],
            notices: [evil])
        let html = ServiceIndexPage(
            identity: ServiceIndexIdentity(context: evil, cluster: evil, user: evil, server: evil, impersonating: evil),
            index: index, proxyPort: "1", pathPrefix: "").html()
        #expect(!html.contains("<script>"))
        #expect(!html.contains("\"'"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;"))
    }

    @Test func forbiddenNamespacesShowTheApiserversReason() {
        let index = ServiceIndex(namespaces: [
            .init(name: "kube-system", listing: .unavailable(
                "Services in this namespace could not be listed: services is forbidden: User \"dev\" cannot list resource \"services\" (HTTP 403)")),
            .init(name: "empty", listing: .services([])),
            .init(name: "quiet", listing: .services([])),
        ])
        let html = page(index)
        #expect(html.contains("<h2>kube-system</h2>"))
        #expect(html.contains("services is forbidden: User &#34;dev&#34; cannot list resource &#34;services&#34; (HTTP 403)"))
        #expect(html.contains("No services in: empty, quiet"))
        #expect(!html.contains("<h2>empty</h2>"))
    }

    @Test func noServicesAtAll() {
        #expect(page(ServiceIndex()).contains("No services found."))
        #expect(!page(ServiceIndex(notices: ["x"])).contains("No services found."))
    }

    @Test func inClusterIdentity() {
        let html = ServiceIndexPage(
            identity: ServiceIndexIdentity(context: nil, cluster: nil, user: nil, server: "https://10.96.0.1:443"),
            index: ServiceIndex(), proxyPort: nil, pathPrefix: "").html()
        #expect(html.contains("in-cluster service account"))
    }

    @Test func listsAreParsed() throws {
        let services = Array("""
            {"kind":"ServiceList","items":[
             {"metadata":{"name":"b","namespace":"n1"},"spec":{"type":"ClusterIP","ports":[{"name":"web","port":80,"protocol":"TCP","appProtocol":"https"}]}},
             {"metadata":{"name":"a","namespace":"n1"},"spec":{"ports":[{"port":8080}]}},
             {"metadata":{"name":"c","namespace":"n2"},"spec":{}}
            ]}
            """.utf8)
        let grouped = try #require(ServiceIndex.servicesByNamespace(fromList: services))
        #expect(grouped["n1"]?.map(\.name) == ["a", "b"])
        #expect(grouped["n1"]?[1].ports == [.init(name: "web", port: 80, protocolName: "TCP", appProtocol: "https")])
        #expect(grouped["n1"]?[1].ports[0].isHTTPS == true)
        #expect(grouped["n1"]?[0].ports == [.init(name: nil, port: 8080, protocolName: "TCP")])
        #expect(grouped["n2"]?.first?.ports == [])
        #expect(ServiceIndex.servicesByNamespace(fromList: Array("nope".utf8)) == nil)
        let namespaces = Array(#"{"items":[{"metadata":{"name":"z"}},{"metadata":{"name":"a"}}]}"#.utf8)
        #expect(ServiceIndex.namespaceNames(fromList: namespaces) == ["a", "z"])
    }

    @Test func reasonsComeFromStatusBodies() {
        let status = Array(#"{"kind":"Status","status":"Failure","message":"namespaces is forbidden: User \"x\" cannot list","code":403}"#.utf8)
        #expect(ServiceIndex.reason(status: 403, body: status) == "namespaces is forbidden: User \"x\" cannot list (HTTP 403)")
        #expect(ServiceIndex.reason(status: 500, body: Array("boom\n".utf8)) == "the apiserver answered HTTP 500: boom")
        #expect(ServiceIndex.reason(status: 502, body: []) == "the apiserver answered HTTP 502")
    }

    @Test func startupURL() {
        #expect(ServiceIndexURL.announced(addresses: [.v4(host: "127.0.0.1", port: 8001)]) == "http://localhost:8001/")
        #expect(ServiceIndexURL.announced(addresses: [.v6(host: "::", port: 9)]) == "http://localhost:9/")
        #expect(ServiceIndexURL.announced(addresses: [.v4(host: "10.1.2.3", port: 80)]) == "http://10.1.2.3:80/")
        #expect(ServiceIndexURL.announced(addresses: [.v6(host: "fe80::1", port: 80)]) == "http://[fe80::1]:80/")
        #expect(ServiceIndexURL.announced(addresses: [.unix(path: "/run/p.sock")]) == nil)
    }
}
