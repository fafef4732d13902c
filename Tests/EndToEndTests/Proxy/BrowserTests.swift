import Foundation
import StandInServer
import Testing

/// Issue 8 end to end (proxy side): services and pods at their own origin, the cross-origin guard, Host checks,
/// TRACE, and the service index, through the built proxyd in front of the stand-in apiserver. The probe cases are
/// what a hostile page in the user's browser would send; each must be refused without reaching the apiserver.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct BrowserTests {
    /// Requests the stand-in saw for `path` (decoded, without query), since start.
    private func seen(_ h: Harness, _ path: String) -> Int { h.standIn.stats.requestsByPath[path] ?? 0 }

    /// Sends one raw request and reads until the connection closes (or the 10 s receive timeout).
    private func exchange(_ h: Harness, _ request: String) throws -> String {
        let client = try RawClient(port: h.proxy.port)
        client.send(request)
        return client.readToEnd()
    }

    /// The body of a raw HTTP/1.1 response (after the blank line).
    private func body(_ response: String) -> String {
        guard let range = response.range(of: "\r\n\r\n") else { return "" }
        return String(response[range.upperBound...])
    }

    @Test func serviceAndPodHostsMapEveryPathToTheirTargetOnly() async throws {
        let h = try await Harness.start()
        let port = h.proxy.port
        // curl resolves *.localhost to loopback itself (RFC 6761), like browsers: no DNS, no --resolve.
        let grafana = try jsonObject(try await Tool.curl(
            ["http://grafana.monitoring.svc.localhost:\(port)/api/v1/secrets?watch=1&x=%2F"]).stdout)
        #expect(grafana["requestURI"] as? String
            == "/api/v1/namespaces/monitoring/services/grafana/proxy/api/v1/secrets?watch=1&x=%2F")
        #expect(grafana["authenticatedBy"] as? String == "token")
        #expect(seen(h, "/api/v1/secrets") == 0)  // isolation: never the apiserver's own /api/v1/secrets

        let forms: [(String, String)] = [
            ("http.grafana.monitoring.svc.localhost", "/api/v1/namespaces/monitoring/services/grafana:http/proxy/"),
            ("3000.grafana.monitoring.svc.localhost", "/api/v1/namespaces/monitoring/services/grafana:3000/proxy/"),
            ("https--443.dash.kube-system.svc.localhost", "/api/v1/namespaces/kube-system/services/https:dash:443/proxy/"),
            ("web-0.default.pod.localhost", "/api/v1/namespaces/default/pods/web-0/proxy/"),
            ("https--8443.web-0.default.pod.localhost", "/api/v1/namespaces/default/pods/https:web-0:8443/proxy/"),
            ("Grafana.Monitoring.SVC.localhost", "/api/v1/namespaces/monitoring/services/grafana/proxy/"),
        ]
        for (host, expected) in forms {
            let echo = try jsonObject(try await Tool.curl(["http://\(host):\(port)/"]).stdout)
            #expect(echo["requestURI"] as? String == expected, "\(host)")
        }
        // A path the apiserver already rewrote into the proxy path is mapped once.
        let rewritten = "/api/v1/namespaces/monitoring/services/grafana/proxy/public/app.js"
        let once = try jsonObject(try await Tool.curl(["http://grafana.monitoring.svc.localhost:\(port)\(rewritten)"]).stdout)
        #expect(once["requestURI"] as? String == rewritten)
        // `..` cannot leave the target: it is redirected on the same host first.
        let dots = try await Tool.curl(["-i", "--path-as-is", "http://grafana.monitoring.svc.localhost:\(port)/x/..%2F..%2F..%2Fapi"])
        #expect(dots.text.hasPrefix("HTTP/1.1 301"))
        #expect(dots.text.contains("Location: /api\r\n"))
        // The path form works exactly as before.
        let pathForm = try jsonObject(try await Tool.curl(["\(h.url)/api/v1/namespaces/monitoring/services/grafana/proxy/x"]).stdout)
        #expect(pathForm["requestURI"] as? String == "/api/v1/namespaces/monitoring/services/grafana/proxy/x")
        // The user's own --accept-hosts still decides.
        await h.stop()
        let strict = try await Harness.start(proxyArguments: ["--accept-hosts=^localhost$"])
        let refused = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://grafana.monitoring.svc.localhost:\(strict.proxy.port)/"])
        #expect(refused.text == "403")
        await strict.stop()
    }

    @Test func malformedServiceHostsAndInvalidHostHeadersGet400AndClose() async throws {
        let h = try await Harness.start()
        for host in ["grafana..svc.localhost:1", "grafana.monitoring.svc.localhost.:1",
                     "\(String(repeating: "a", count: 64)).b.svc.localhost", "gr_afana.monitoring.svc.localhost",
                     "localhost:8001@evil.example", "localhost:8001:8002", "evil.example@localhost"] {
            let response = try exchange(h, "GET /api HTTP/1.1\r\nHost: \(host)\r\n\r\nGET /api HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(response.hasPrefix("HTTP/1.1 400"), "\(host): \(response.prefix(200))")
            #expect(response.contains("Connection: close\r\n"))
            #expect(response.contains("\"kind\":\"Status\""))
            #expect(response.contains("invalid Host"))
            #expect(response.components(separatedBy: "HTTP/1.1 ").count == 2, "the pipelined request must not be answered")
        }
        let spaces = try exchange(h, "GET /api HTTP/1.1\r\nHost: local host\r\n\r\n")
        #expect(spaces.hasPrefix("HTTP/1.1 400"))
        #expect(seen(h, "/api") == 0)
        await h.stop()
    }

    /// The probe cases of the issue: a hostile page's WebSocket to a watch, to port-forward and to exec, a
    /// cross-origin POST, a cross-site no-cors request, TRACE. Refused, never forwarded.
    @Test func probesAreRefusedWithoutReachingTheApiserver() async throws {
        // reject-paths would refuse exec before the guard does: let it through to show that the guard alone holds.
        let h = try await Harness.start(proxyArguments: ["--reject-paths=^/nothing"])
        let evil = "http://evil.example"
        let upgrades: [(String, String, String)] = [
            ("/api/v1/secrets?watch=1", "websocket", "/api/v1/secrets"),
            ("/api/v1/namespaces/default/pods/p/portforward?ports=80", "SPDY/3.1", "/api/v1/namespaces/default/pods/p/portforward"),
            ("/api/v1/namespaces/default/pods/p/portforward", "websocket", "/api/v1/namespaces/default/pods/p/portforward"),
            ("/api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true", "websocket", "/api/v1/namespaces/default/pods/p/exec"),
        ]
        for (target, proto, path) in upgrades {
            let response = try exchange(h,
                "GET \(target) HTTP/1.1\r\nHost: localhost:\(h.proxy.port)\r\nOrigin: \(evil)\r\nConnection: Upgrade\r\n"
                + "Upgrade: \(proto)\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: websocket\r\n\r\n")
            #expect(response.hasPrefix("HTTP/1.1 403"), "\(target): \(response.prefix(300))")
            let status = try jsonObject(Data(body(response).utf8))
            #expect(status["kind"] as? String == "Status")
            #expect(status["code"] as? Int == 403)
            let message = status["message"] as? String ?? ""
            #expect(message.contains("\"\(evil)\""))
            #expect(message.contains("--accept-origins"))
            #expect(seen(h, path) == 0)
        }
        // A cross-origin POST (a form or fetch from another site).
        let post = try await Tool.curl(["-i", "-X", "POST", "-H", "Origin: \(evil)", "-H", "Content-Type: application/json",
                                        "--data", #"{"metadata":{"name":"x"}}"#, "\(h.url)/api/v1/namespaces/default/configmaps"])
        #expect(post.text.hasPrefix("HTTP/1.1 403"))
        let postStatus = try jsonObject(Data(body(post.text).utf8))
        #expect((postStatus["message"] as? String ?? "").contains(#"--accept-origins='^http://evil\.example$'"#))
        #expect(!post.text.lowercased().contains("access-control-"))
        // A cross-site request without Origin (an <img> or no-cors fetch): Fetch Metadata gives it away.
        let noCors = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Sec-Fetch-Site: cross-site",
                                          "-H", "Sec-Fetch-Mode: no-cors", "\(h.url)/api/v1/namespaces/default/configmaps"])
        #expect(noCors.text == "403")
        // "null" origins (sandboxed frames, file: pages) are foreign.
        let null = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "-H", "Origin: null",
                                        "\(h.url)/api/v1/namespaces/default/configmaps/x"])
        #expect(null.text == "403")
        // A dashboard on its service host calling the API's origin.
        let fromDashboard = try exchange(h,
            "GET /api/v1/secrets?watch=1 HTTP/1.1\r\nHost: localhost:\(h.proxy.port)\r\n"
            + "Origin: http://grafana.monitoring.svc.localhost:\(h.proxy.port)\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        #expect(fromDashboard.hasPrefix("HTTP/1.1 403"))
        // TRACE and TRACK: 405, never forwarded, even from curl and on a service host.
        for (method, host) in [("TRACE", "localhost"), ("TRACK", "localhost"), ("TRACE", "grafana.monitoring.svc.localhost")] {
            let trace = try exchange(h, "\(method) /api/v1/namespaces HTTP/1.1\r\nHost: \(host)\r\nAuthorization: Bearer mine\r\nConnection: close\r\n\r\n")
            #expect(trace.hasPrefix("HTTP/1.1 405"), "\(method) \(host)")
            #expect(trace.contains("Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"))
        }
        // A userinfo Host (localhost:8001@evil.example) is the 400 of the test above; here from a browser-like probe.
        let userinfo = try exchange(h, "GET /api/v1/secrets HTTP/1.1\r\nHost: localhost:\(h.proxy.port)@evil.example\r\nOrigin: \(evil)\r\n\r\n")
        #expect(userinfo.hasPrefix("HTTP/1.1 400"))

        let stats = h.standIn.stats
        #expect(seen(h, "/api/v1/namespaces/default/configmaps") == 0)
        #expect(seen(h, "/api/v1/namespaces/default/configmaps/x") == 0)
        #expect(seen(h, "/api/v1/namespaces") == 0)
        #expect(seen(h, "/api/v1/secrets") == 0)
        #expect(stats.upgrades.isEmpty)
        #expect(stats.h1Connections == 0)  // no upgrade connection was even opened
        // The decision is logged at -v 3 only; with -v 0 nothing was printed about it.
        #expect(!h.proxy.child.stderr.contains("Filter rejecting"))
        await h.stop()
    }

    @Test func sameOriginAndAllowedRequestsStillWork() async throws {
        let h = try await Harness.start(proxyArguments: ["--accept-origins=^https://dash\\.example\\.com$", "-v", "3"])
        let port = h.proxy.port
        // A dashboard's own WebSocket on its service host: same origin, routed to the service.
        let client = try RawClient(port: port)
        let host = "grafana.monitoring.svc.localhost:\(port)"
        client.send("GET /ws HTTP/1.1\r\nHost: \(host)\r\nOrigin: http://\(host)\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    + "Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: websocket\r\n\r\n")
        let greeting = client.read(until: "auth=")
        #expect(greeting.hasPrefix("HTTP/1.1 101"))
        #expect(greeting.contains("path=/api/v1/namespaces/monitoring/services/grafana/proxy/ws"))
        client.close()
        // A same-origin POST from the page proxyd serves at localhost.
        let sameOrigin = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Origin: http://localhost:\(port)",
                                              "--data", "x", "http://localhost:\(port)/standin/echo/p"])
        #expect(sameOrigin.text == "200")
        // A cross-origin GET passes (the page cannot read it: no CORS headers are added).
        let crossGet = try await Tool.curl(["-i", "-H", "Origin: http://other.example", "\(h.url)/api"])
        #expect(crossGet.text.hasPrefix("HTTP/1.1 200"))
        #expect(!crossGet.text.lowercased().contains("access-control-allow"))
        // A trusted origin may POST and upgrade.
        let trusted = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Origin: https://dash.example.com",
                                           "-H", "Sec-Fetch-Site: cross-site", "--data", "x", "\(h.url)/standin/echo/t"])
        #expect(trusted.text == "200")
        // A link followed from another site is a navigation: allowed.
        let navigation = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Sec-Fetch-Site: cross-site",
                                              "-H", "Sec-Fetch-Mode: navigate", "\(h.url)/api"])
        #expect(navigation.text == "200")
        let refused = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Origin: https://dash.example.com.evil",
                                           "--data", "x", "\(h.url)/standin/echo/r"])
        #expect(refused.text == "403")
        #expect(seen(h, "/standin/echo/r") == 0)
        try await Task.sleep(for: .milliseconds(200))
        let log = h.proxy.child.stderr
        #expect(log.contains("Filter rejecting POST /standin/echo/r 127.0.0.1:\(port): proxyd refused a cross-origin POST request from origin \"https://dash.example.com.evil\""))
        #expect(log.contains("Filter accepting POST /standin/echo/t 127.0.0.1:\(port) from https://dash.example.com (--accept-origins)"))
        await h.stop()

        // --disable-filter turns the guard off with the other filters.
        let open = try await Harness.start(proxyArguments: ["--disable-filter"])
        let anything = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Origin: http://evil.example",
                                            "--data", "x", "\(open.url)/standin/echo/d"])
        #expect(anything.text == "200")
        await open.stop()
    }

    /// The demo dashboard (a real backend behind the stand-in's service proxy, which rewrites HTML and `Location`
    /// as the apiserver does) on its own host: links the apiserver rewrote, redirects, cookies, `fetch('/api/…')`
    /// and its WebSocket all stay on the service host.
    @Test func dashboardWorksOnItsServiceHost() async throws {
        let h = try await Harness.start(standIn: { $0.demo = true })
        let port = h.proxy.port
        let host = "dashboard.demo.svc.localhost:\(port)"
        let prefix = "/api/v1/namespaces/demo/services/dashboard/proxy"
        let page = try await Tool.curl(["http://\(host)/"])
        #expect(page.text.contains("src=\"\(prefix)/static/app.js\""))  // rewritten by the (stand-in) apiserver
        // The rewritten link is mapped once on the service host.
        let script = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://\(host)\(prefix)/static/app.js"])
        #expect(script.text == "200")
        // The dashboard's own fetch('/api/data') reaches the dashboard, not the apiserver.
        let data = try jsonObject(try await Tool.curl(["-H", "Cookie: dashboard-session=s1", "http://\(host)/api/data"]).stdout)
        #expect(data["message"] as? String == "hello from the demo dashboard")
        #expect(data["cookies"] as? String == "dashboard-session=s1")
        let probe = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://\(host)/api/v1/namespaces"])
        #expect(probe.text == "404")
        #expect(seen(h, "/api/v1/namespaces") == 0)
        // Redirects: to a path (the apiserver made it the proxy path) and to the Host the backend was given.
        for path in ["/login", "/login-absolute"] {
            let login = try await Tool.curl(["-i", "http://\(host)\(path)"])
            #expect(login.text.hasPrefix("HTTP/1.1 302"), "\(path)")
            #expect(login.text.lowercased().contains("\r\nlocation: /home\r\n"), "\(path): \(login.text)")
            // The cookie's Domain (the apiserver's address) is gone: it belongs to the service host.
            #expect(login.text.contains("dashboard-login=demo-user; Path=/; SameSite=Lax\r\n"), "\(path): \(login.text)")
        }
        // Following the redirect with the cookie jar stays on the service host and the cookie comes back.
        let jar = h.directory.appendingPathComponent("jar").path
        let followed = try await Tool.curl(["-L", "-c", jar, "-b", jar, "-o", "/dev/null", "-w", "%{http_code} %{url_effective}",
                                            "http://\(host)/login"])
        #expect(followed.text == "200 http://\(host)/home")
        // The path form keeps kubectl's behaviour: the apiserver's Location and Domain pass unchanged.
        let pathForm = try await Tool.curl(["-i", "\(h.url)\(prefix)/login"])
        #expect(pathForm.text.lowercased().contains("\r\nlocation: \(prefix)/home\r\n"))
        #expect(pathForm.text.contains("Domain=127.0.0.1"))
        // The dashboard's own WebSocket (same origin) is tunnelled to it and echoes.
        let client = try RawClient(port: port)
        client.send("GET /ws HTTP/1.1\r\nHost: \(host)\r\nOrigin: http://\(host)\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        let handshake = client.read(until: "\r\n\r\n")
        #expect(handshake.hasPrefix("HTTP/1.1 101"), "\(handshake)")
        client.send(Self.maskedTextFrame("hello from the page"))
        #expect(Self.unmaskedText(client.readSome()) == "hello from the page")
        client.close()
        // The same WebSocket opened by another origin never reaches the dashboard.
        let upgradesBefore = h.standIn.stats.upgrades
        let foreign = try exchange(h, "GET /ws HTTP/1.1\r\nHost: \(host)\r\nOrigin: http://evil.example\r\nConnection: Upgrade\r\n"
                                   + "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        #expect(foreign.hasPrefix("HTTP/1.1 403"))
        #expect(h.standIn.stats.upgrades == upgradesBefore)
        await h.stop()
    }

    /// A client's text frame (RFC 6455: masked).
    static func maskedTextFrame(_ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        return [0x81, 0x80 | UInt8(payload.count)] + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    /// The text of one short unmasked server frame.
    static func unmaskedText(_ frame: [UInt8]) -> String? {
        guard frame.count >= 2, frame[0] == 0x81, frame[1] < 126, frame.count >= 2 + Int(frame[1]) else { return nil }
        return String(decoding: frame[2..<(2 + Int(frame[1]))], as: UTF8.self)
    }

    @Test func browsersGetTheServiceIndexAtTheRootAndOthersTheApiserversAnswer() async throws {
        let h = try await Harness.start(standIn: { $0.demo = true })
        // Every other client still gets the apiserver's own answer for /.
        let api = try await Tool.curl(["-i", "\(h.url)/"])
        #expect(api.text.hasPrefix("HTTP/1.1 200"))
        #expect(api.text.contains("\"paths\""))
        let page = try await Tool.curl(["-i", "-H", "Accept: text/html,application/xhtml+xml,*/*;q=0.8",
                                        "-H", "Sec-Fetch-Mode: navigate", "\(h.url)/"])
        #expect(page.text.hasPrefix("HTTP/1.1 200"))
        #expect(page.text.contains("Content-Type: text/html; charset=utf-8\r\n"))
        #expect(page.text.contains("Content-Security-Policy: default-src 'none'"))
        #expect(page.text.contains("<h1>Services</h1>"))
        #expect(page.text.contains("<dd>https://127.0.0.1:\(h.standIn.port)</dd>"))
        #expect(!page.text.lowercased().contains("<script"))
        // Every namespace the user may list, each port a link to its host route with the path form beside it.
        let port = h.proxy.port
        #expect(page.text.contains("<a href=\"http://dashboard.demo.svc.localhost:\(port)/\">"))
        #expect(page.text.contains("<a href=\"http://metrics.api.demo.svc.localhost:\(port)/\">"))
        #expect(page.text.contains("href=\"/api/v1/namespaces/demo/services/api:metrics/proxy/\""))
        #expect(page.text.contains("<a href=\"http://https--https.dashboard-tls.demo.svc.localhost:\(port)/\">"))
        #expect(page.text.contains("<h2>monitoring</h2>"))
        // Listing across namespaces is forbidden (the stand-in's RBAC for "restricted"): each namespace is listed,
        // and the forbidden one shows the apiserver's reason.
        #expect(page.text.contains("<h2>restricted</h2>"))
        #expect(page.text.contains("services is forbidden: User &#34;standin-user&#34; cannot list resource &#34;services&#34;"))
        #expect(!page.text.contains("vault"))
        #expect(seen(h, "/api/v1/services") == 1)
        #expect(seen(h, "/api/v1/namespaces/restricted/services") == 1)
        // The links work: the dashboard answers on its host.
        let dashboard = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://dashboard.demo.svc.localhost:\(port)/"])
        #expect(dashboard.text == "200")
        // When even namespaces may not be listed, the page says why and shows the context's namespace.
        h.standIn.forbid(ForbiddenRule(verb: "list", resource: "namespaces"))
        let narrow = try await Tool.curl(["-H", "Accept: text/html", "\(h.url)/"])
        #expect(narrow.text.contains("Namespaces could not be listed (namespaces is forbidden"))
        #expect(narrow.text.contains("showing the context&#39;s namespace &#34;default&#34;"))
        #expect(narrow.text.contains("<a href=\"http://https--https.kubernetes.default.svc.localhost:\(port)/\">"))
        #expect(!narrow.text.contains("<h2>demo</h2>"))
        // HEAD: the head only.
        let head = try await Tool.curl(["-I", "-H", "Sec-Fetch-Mode: navigate", "\(h.url)/"])
        #expect(head.text.hasPrefix("HTTP/1.1 200"))
        #expect(head.text.contains("text/html"))
        // The page's URL is printed on stderr; stdout keeps kubectl's line alone.
        #expect(h.proxy.child.stderr.contains("Service index for browsers: http://localhost:\(h.proxy.port)/\n"))
        #expect(h.proxy.child.stdout == "Starting to serve on 127.0.0.1:\(h.proxy.port)\n")
        await h.stop()
    }
}
