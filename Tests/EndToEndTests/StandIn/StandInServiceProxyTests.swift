import Foundation
import StandInServer
import Testing

// The stand-in's services, its RBAC-style refusals, and its service/pod proxy in front of the demo dashboard,
// driven with curl, kubectl and Python's websocket-client (a dependency of the `kubernetes` package that
// scripts/install-deps installs).

private let demoPrefix = "/api/v1/namespaces/demo/services/dashboard/proxy"

@Suite("StandIn service proxy", .timeLimit(.minutes(2)))
struct StandInServiceProxyTests {
    @Test func servicesAreListedPerNamespaceAndForbiddenWhereTheDemoSaysSo() async throws {
        try await withFixture(configure: { $0.demo = true }) { fixture in
            let list = try jsonObject(Data(try await fixture.curl([fixture.url("/api/v1/namespaces/demo/services")]).stdout.utf8))
            #expect(list["kind"] as? String == "ServiceList")
            let items = try #require(list["items"] as? [[String: Any]])
            let names = items.compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }
            #expect(names == ["api", "dashboard", "dashboard-tls"])
            let api = try #require(items.first { ($0["metadata"] as? [String: Any])?["name"] as? String == "api" })
            #expect(api["kind"] as? String == "Service")
            let spec = try #require(api["spec"] as? [String: Any])
            #expect(spec["type"] as? String == "ClusterIP")
            #expect((spec["clusterIP"] as? String)?.hasPrefix("10.96.") == true)
            let ports = try #require(spec["ports"] as? [[String: Any]])
            #expect(ports.map { $0["name"] as? String } == ["http", "metrics"])
            #expect(ports.map { $0["port"] as? Int } == [80, 9090])
            #expect(ports.map { $0["protocol"] as? String } == ["TCP", "TCP"])
            #expect(ports[0]["targetPort"] as? Int == 8080)
            #expect(ports[1]["targetPort"] as? String == "metrics")

            let one = try jsonObject(Data(try await fixture.curl([fixture.url("/api/v1/namespaces/demo/services/dashboard")]).stdout.utf8))
            #expect((one["spec"] as? [String: Any])?["selector"] as? [String: String] == ["app": "dashboard"])

            let namespaces = try jsonObject(Data(try await fixture.curl([fixture.url("/api/v1/namespaces")]).stdout.utf8))
            let nsNames = (namespaces["items"] as? [[String: Any]])?.compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }
            #expect(Set(nsNames ?? []).isSuperset(of: ["default", "demo", "monitoring", "restricted"]))

            // RBAC's answer: in the namespace, and so across all namespaces too.
            let (body, code) = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/namespaces/restricted/services")]).splitTrailer()
            #expect(code == "403")
            let status = try jsonObject(Data(body.utf8))
            #expect(status["kind"] as? String == "Status")
            #expect(status["reason"] as? String == "Forbidden")
            #expect(status["message"] as? String
                == #"services is forbidden: User "standin-user" cannot list resource "services" in API group "" in the namespace "restricted""#)
            #expect((status["details"] as? [String: Any])?["kind"] as? String == "services")
            let (allBody, allCode) = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/services")]).splitTrailer()
            #expect(allCode == "403")
            #expect((try jsonObject(Data(allBody.utf8))["message"] as? String)?.hasSuffix("at the cluster scope") == true)
            // Getting one object is still allowed (only list and watch are refused).
            let vault = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/namespaces/restricted/services/vault")])
            #expect(vault.splitTrailer().1 == "200")

            // kubectl's table for services.
            let table = try await fixture.kubectl(["--kubeconfig", fixture.path("kubeconfig"), "get", "services", "-n", "demo"])
            #expect(table.exitCode == 0, "\(table.stderr)")
            #expect(table.stdout.contains("PORT(S)"))
            #expect(table.stdout.contains("80/TCP,9090/TCP"))
        }
    }

    @Test func forbiddenRulesChangeAtRuntime() async throws {
        try await withFixture { fixture in
            #expect(try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/services")]).splitTrailer().1 == "200")
            let added = try await fixture.curl(["-X", "POST", fixture.url("/standin/forbid?resource=services&namespace=default")])
            #expect(added.stdout.contains(#""resource":"services","namespace":"default""#))
            #expect(try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/namespaces/default/services")]).splitTrailer().1 == "403")
            #expect(try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/namespaces/kube-system/services")]).splitTrailer().1 == "200")
            _ = try await fixture.curl(["-X", "DELETE", fixture.url("/standin/forbid")])
            #expect(try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/namespaces/default/services")]).splitTrailer().1 == "200")
            fixture.standIn.forbid(ForbiddenRule(resource: "namespaces"))
            let (body, code) = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/namespaces")]).splitTrailer()
            #expect(code == "403")
            #expect((try jsonObject(Data(body.utf8))["message"] as? String)?.contains(#"cannot list resource "namespaces""#) == true)
        }
    }

    @Test func serviceProxyForwardsToTheBackendWithTheApiserversHeaders() async throws {
        try await withFixture(configure: { $0.demo = true }) { fixture in
            let result = try await fixture.curl([
                "-i", "-H", "Cookie: a=1", "-H", "Impersonate-User: mallory", "-H", "X-Forwarded-For: 10.0.0.9",
                fixture.url(demoPrefix + "/api/data?x=1"),
            ])
            let (head, body) = split(result.stdout)
            let data = try jsonObject(Data(body.utf8))
            #expect(data["message"] as? String == "hello from the demo dashboard")
            #expect(data["host"] as? String == "127.0.0.1:\(fixture.standIn.port)")
            #expect(data["cookies"] as? String == "a=1")
            #expect(data["authorization"] as? String == "")  // the apiserver's authentication filter removed it
            #expect(data["forwardedUri"] as? String == demoPrefix + "/api/data")
            #expect(data["forwardedFor"] as? String == "10.0.0.9, 127.0.0.1")
            #expect(!head.lowercased().contains("access-control-allow-origin"))  // CORS fields removed

            let post = try await fixture.curl(["-X", "POST", "--data-binary", "hello", fixture.url(demoPrefix + "/api/data")])
            let posted = try jsonObject(Data(post.stdout.utf8))
            #expect(posted["method"] as? String == "POST")
            #expect(posted["bodyLength"] as? Int == 5)
        }
    }

    @Test func htmlAndRedirectsAreRewrittenLikeTheApiserver() async throws {
        try await withFixture(configure: { $0.demo = true }) { fixture in
            let page = try await fixture.curl([fixture.url(demoPrefix + "/")]).stdout
            #expect(page.contains(#"<script src="\#(demoPrefix)/static/app.js" defer>"#))
            #expect(page.contains(#"<a id="about-link" href="\#(demoPrefix)/about">"#))
            #expect(page.contains(#"<form id="search-form" action="\#(demoPrefix)/search""#))
            #expect(page.contains(#"formaction="\#(demoPrefix)/search""#))
            let script = try await fixture.curl([fixture.url(demoPrefix + "/static/app.js")]).stdout
            #expect(script.contains("fetch('/api/data'"))  // not HTML: untouched

            // The empty proxy path is redirected to the one with a slash.
            let bare = try await fixture.curl(["-i", fixture.url(demoPrefix + "?a=b")]).stdout
            #expect(bare.hasPrefix("HTTP/2 301"))
            #expect(bare.lowercased().contains("location: \(demoPrefix)/?a=b\r\n"))

            // Location: a path gets the prefix; an absolute URL at the Host the apiserver was asked for keeps it.
            let login = try await fixture.curl(["-i", fixture.url(demoPrefix + "/login")]).stdout.lowercased()
            #expect(login.hasPrefix("http/2 302"))
            #expect(login.contains("location: \(demoPrefix)/home\r\n"))
            #expect(login.contains("set-cookie: dashboard-login=demo-user; path=/; domain=127.0.0.1; samesite=lax"))
            let absolute = try await fixture.curl(["-i", fixture.url(demoPrefix + "/login-absolute")]).stdout.lowercased()
            #expect(absolute.contains("location: http://127.0.0.1:\(fixture.standIn.port)\(demoPrefix)/home\r\n"))
        }
    }

    @Test func portsSchemesAndPodsResolveLikeTheApiserver() async throws {
        try await withFixture(configure: { $0.demo = true }) { fixture in
            let dashboard = try #require(fixture.standIn.demoDashboard)
            func data(_ path: String) async throws -> [String: Any] {
                try jsonObject(Data(try await fixture.curl([fixture.url(path)]).stdout.utf8))
            }
            // https: to the TLS port, by port number (mapped to the port's name) and by name.
            for id in ["https:dashboard-tls:443", "https:dashboard-tls:https"] {
                let json = try await data("/api/v1/namespaces/demo/services/\(id)/proxy/api/data")
                #expect(json["forwardedUri"] as? String == "/api/v1/namespaces/demo/services/\(id)/proxy/api/data")
            }
            // The unnamed port by its number; a pod by its first declared port and by an explicit one.
            #expect(try await data("/api/v1/namespaces/demo/services/dashboard:80/proxy/api/data")["message"] != nil)
            let pod = "/api/v1/namespaces/demo/pods/dashboard-7c9d8f6b5-x2k4q"
            #expect(try await data(pod + "/proxy/api/data")["message"] != nil)
            #expect(try await data("\(pod):\(dashboard.httpPort)/proxy/api/data")["message"] != nil)
            #expect(try await data("/api/v1/namespaces/demo/pods/https:dashboard-7c9d8f6b5-x2k4q:\(dashboard.httpsPort)/proxy/api/data")["message"] != nil)

            // What the apiserver answers when the target cannot be reached: 503 with a Status.
            for (path, message) in [
                ("/api/v1/namespaces/demo/services/dashboard:9999/proxy/", #"no service port 9999 found for service "dashboard""#),
                ("/api/v1/namespaces/demo/services/dashboard:web/proxy/", #"no endpoints available for service "dashboard:web""#),
                ("\(pod):1/proxy/", "dials only the declared container ports"),
            ] {
                let (body, code) = try await fixture.curl(["-w", "\n%{http_code}", fixture.url(path)]).splitTrailer()
                #expect(code == "503", "\(path)")
                #expect((try jsonObject(Data(body.utf8))["message"] as? String)?.contains(message) == true, "\(path): \(body)")
            }

            // Services without a loopback backend, and ones not in the store, keep the echo.
            for path in ["/api/v1/namespaces/demo/services/api/proxy/x", "/api/v1/namespaces/nowhere/services/nothing/proxy/x"] {
                #expect(try await data(path)["path"] as? String == path)
            }
        }
    }

    @Test func webSocketUpgradesAreTunnelledToTheBackend() async throws {
        try await withFixture(configure: { $0.demo = true }) { fixture in
            let script = #"""
                import sys, websocket
                base, ca = sys.argv[1], sys.argv[2]
                for target in ["services/dashboard", "services/https:dashboard-tls:443", "pods/dashboard-7c9d8f6b5-x2k4q"]:
                    ws = websocket.create_connection(base + "/api/v1/namespaces/demo/" + target + "/proxy/ws",
                        sslopt={"ca_certs": ca}, header=["Authorization: Bearer standin-token"], timeout=20)
                    ws.send("hello " + target)
                    print(ws.recv(), flush=True)
                    ws.close()
                """#
            let file = fixture.path("ws.py")
            try script.write(toFile: file, atomically: true, encoding: .utf8)
            let run = try await Tool.run("python3", [file, "wss://127.0.0.1:\(fixture.standIn.port)", fixture.path("ca.crt")])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.text == "hello services/dashboard\nhello services/https:dashboard-tls:443\nhello pods/dashboard-7c9d8f6b5-x2k4q\n")
            #expect(fixture.standIn.stats.upgrades["proxy websocket"] == 3)
        }
    }

    private func split(_ response: String) -> (String, String) {
        guard let range = response.range(of: "\r\n\r\n") else { return (response, "") }
        return (String(response[..<range.lowerBound]), String(response[range.upperBound...]))
    }
}
