import Foundation
import StandInServer
import Testing

/// Issue 8 in a real browser: headless Chromium, driven through the DevTools protocol, against the built proxyd in
/// front of the stand-in apiserver with the demo's sample data and dashboard (`StandInConfiguration.demo`). What the
/// dashboard's JavaScript did is read back from its page (`#fetch-result`, `#ws-result`, `#cookie-result`,
/// `#api-probe-result`); what reached the apiserver from the stand-in's own counters.
@Suite(
    "Chromium", .serialized, .timeLimit(.minutes(3)),
    .enabled(if: Chromium.isInstalled, "\(Chromium.missingMessage)"))
struct ChromiumTests {
    static let dashboardPath = "/api/v1/namespaces/demo/services/dashboard/proxy"

    /// Runs `body` with proxyd + demo stand-in and one browser, and cleans up whatever happens.
    private func withBrowser(_ body: (Harness, Chromium) async throws -> Void) async throws {
        let h = try await Harness.start(standIn: { $0.demo = true })
        let browser: Chromium
        do {
            browser = try await Chromium.launch()
        } catch {
            await h.stop()
            throw error
        }
        do {
            try await body(h, browser)
        } catch {
            await browser.close()
            await h.stop()
            throw error
        }
        await browser.close()
        await h.stop()
    }

    private func seen(_ h: Harness, _ path: String) -> Int { h.standIn.stats.requestsByPath[path] ?? 0 }

    // (a)
    @Test func indexPageListsTheDemoServicesAndLinksToThem() async throws {
        try await withBrowser { h, browser in
            let port = h.proxy.port
            let page = try browser.newPage()
            try await page.open("http://localhost:\(port)/")
            #expect(try page.evaluate("document.title") as? String == "proxyd: services")
            let text = try #require(try page.evaluate("document.body.innerText") as? String)
            for name in ["demo", "dashboard", "dashboard-tls", "api", "monitoring", "prometheus", "grafana", "kubernetes"] {
                #expect(text.contains(name), "\(name) missing from the index page")
            }
            // Listing was forbidden in `restricted`: the page shows the apiserver's reason.
            #expect(text.contains(#"services is forbidden: User "standin-user" cannot list resource "services" in API group "" in the namespace "restricted""#))
            let links = try #require(try page.evaluate("Array.from(document.links).map(a => a.href)") as? [String])
            let hostLink = "http://dashboard.demo.svc.localhost:\(port)/"  // the service's single unnamed port
            let tlsLink = "http://https--https.dashboard-tls.demo.svc.localhost:\(port)/"
            #expect(links.contains(hostLink))
            #expect(links.contains("http://localhost:\(port)/api/v1/namespaces/demo/services/dashboard/proxy/"))
            #expect(links.contains(tlsLink))

            // Following the links: the dashboard opens at its own origin and its script works, also when the
            // apiserver reaches it over TLS (`https:dashboard-tls:https`).
            for link in [hostLink, tlsLink] {
                try await page.open(link)
                try await page.waitUntil("document.getElementById('done') && document.getElementById('done').textContent === 'done'")
                #expect(try page.text("fetch-result") == "hello from the demo dashboard", "\(link)")
                #expect(try page.text("ws-result").hasPrefix("echo: ping "), "\(link)")
            }
        }
    }

    // (b)
    @Test func dashboardAtItsOwnOriginRunsItsJavaScript() async throws {
        try await withBrowser { h, browser in
            let port = h.proxy.port
            let origin = "http://dashboard.demo.svc.localhost:\(port)"
            let page = try browser.newPage()
            h.standIn.resetStats()
            try await page.open(origin + "/")
            try await page.waitUntil("document.getElementById('done').textContent === 'done'")

            #expect(try page.text("script-result") == "ran at dashboard.demo.svc.localhost:\(port)")
            // fetch('/api/data'): an absolute path built in JavaScript reaches the dashboard.
            #expect(try page.text("fetch-result") == "hello from the demo dashboard")
            #expect(try page.attribute("fetch-result", "class") == "ok")
            // new WebSocket('ws://' + location.host + '/ws'): the echo came back.
            let ws = try page.text("ws-result")
            #expect(ws.hasPrefix("echo: ping "), "\(ws)")
            #expect(try page.attribute("ws-result", "class") == "ok")
            // Cookies: the one the server set and the one the script set, both sent back to the server.
            let cookies = try page.text("cookie-result")
            #expect(try page.attribute("cookie-result", "class") == "ok", "\(cookies)")
            #expect(cookies.contains("dashboard-session=s"))
            #expect(cookies.contains("dashboard-theme=dark"))
            #expect(cookies.components(separatedBy: "the server received: ").last?.contains("dashboard-theme=dark") == true)
            // Isolation: '/api/v1/namespaces' on this origin is the dashboard's own path, not the cluster's.
            #expect(try page.text("api-probe-result") == "HTTP 404: the cluster API is out of this page's reach")
            #expect(seen(h, "/api/v1/namespaces") == 0)
            #expect(seen(h, Self.dashboardPath + "/api/v1/namespaces") == 1)
            #expect(h.standIn.stats.upgrades["proxy websocket"] == 1)

            // Sign in: a redirect to a path and a cookie with another host's Domain stay on the service's origin.
            try await page.open(origin + "/login")
            try await page.waitUntil("document.getElementById('login-result') !== null")
            #expect(page.location.hasPrefix(origin + "/"), "\(page.location)")
            #expect(try page.text("login-result") == "signed in as demo-user")

            // The dashboard's cookies belong to its host only: the proxy's own origin does not see them.
            try await page.open("http://localhost:\(port)/version")
            #expect(try page.evaluate("document.cookie") as? String == "")
        }
    }

    // (c)
    @Test func dashboardInThePathFormGetsOnlyTheRewrittenLinks() async throws {
        try await withBrowser { h, browser in
            let port = h.proxy.port
            let page = try browser.newPage()
            h.standIn.resetStats()
            try await page.open("http://localhost:\(port)\(Self.dashboardPath)/")
            try await page.waitUntil("document.getElementById('done').textContent === 'done'")

            // What works: the links the apiserver rewrote (the script, the stylesheet, the logo, the anchors).
            #expect(try page.text("script-result") == "ran at localhost:\(port)")
            #expect(try page.attribute("about-link", "href") == Self.dashboardPath + "/about")
            #expect(try page.evaluate("document.getElementById('logo').naturalWidth > 0") as? Bool == true)
            #expect(try page.evaluate("getComputedStyle(document.body).maxWidth") as? String == "768px")  // app.css applied

            // What does not: URLs the script builds itself go to the proxy's root, i.e. the apiserver.
            #expect(try page.text("fetch-result") == "failed: HTTP 404")
            #expect(seen(h, "/api/data") == 1)
            #expect(try page.text("ws-result").hasPrefix("failed: "))
            #expect(h.standIn.stats.upgrades["proxy websocket"] == nil)
            // The cookies land on the proxy's origin, shared with everything behind it; the server never gets them.
            let cookies = try page.text("cookie-result")
            #expect(cookies.contains("dashboard-session=s"))
            #expect(cookies.hasSuffix("the server received: (no answer from /api/data)"))
            // And the page's script can read the cluster API with the user's credentials: the path form's danger.
            #expect(try page.text("api-probe-result") == "HTTP 200 NamespaceList: this page can read the cluster API with your credentials")
            #expect(seen(h, "/api/v1/namespaces") == 1)

            // A rewritten link leads to the next page.
            try await page.open("http://localhost:\(port)\(Self.dashboardPath)/about")
            #expect(try page.text("about") == "The demo dashboard of proxyd's stand-in apiserver.")
        }
    }

    // (d)
    @Test func pageFromAnotherOriginCannotUseTheProxy() async throws {
        try await withBrowser { h, browser in
            let port = h.proxy.port
            let site = try await OtherOriginSite.start(page: Self.probePage(proxy: "localhost:\(port)"))
            defer { site.stop() }
            h.standIn.resetStats()
            let page = try browser.newPage()
            try await page.open("http://127.0.0.1:\(site.port)/probe.html")
            try await page.waitUntil("document.getElementById('done').textContent === 'done'")

            let ws = try page.text("ws-result")
            #expect(ws == "refused" || ws.hasPrefix("closed"), "\(ws)")
            #expect(try page.text("post-result").hasPrefix("sent"))  // the browser sent it (no-cors, opaque answer)
            // Neither reached the apiserver (its counters include upgrade requests).
            #expect(seen(h, "/api/v1/namespaces/default/configmaps") == 0)
            #expect(h.standIn.stats.requestsByPath.isEmpty, "\(h.standIn.stats.requestsByPath)")
            #expect(h.standIn.stats.upgrades.isEmpty, "\(h.standIn.stats.upgrades)")
            let lookup = try await Tool.curl(["-w", "\n%{http_code}", "\(h.url)/api/v1/namespaces/default/configmaps/from-another-site"])
            #expect(lookup.text.hasSuffix("\n404"))
        }
    }

    /// A page on another local origin that tries what a hostile site would: a WebSocket watch and a "simple" POST
    /// (no preflight) to the proxy.
    static func probePage(proxy: String) -> String {
        """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>another site</title></head><body>
        <div id="ws-result">pending</div><div id="post-result">pending</div><div id="done"></div>
        <script>
        var ws = new Promise(function (resolve) {
          var finished = false;
          function finish(text) {
            if (finished) { return; }
            finished = true;
            document.getElementById('ws-result').textContent = text;
            resolve();
          }
          var socket = new WebSocket('ws://\(proxy)/api/v1/namespaces/default/configmaps?watch=1');
          socket.onopen = function () { finish('opened'); };
          socket.onmessage = function (event) { finish('message: ' + event.data); };
          socket.onerror = function () { finish('refused'); };
          socket.onclose = function (event) { finish('closed ' + event.code); };
          setTimeout(function () { finish('no answer within 10 s'); }, 10000);
        });
        var post = fetch('http://\(proxy)/api/v1/namespaces/default/configmaps', {
          method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' },
          body: JSON.stringify({ metadata: { name: 'from-another-site' } })
        }).then(function (response) { return 'sent (' + response.type + ' answer)'; },
                function (error) { return 'failed: ' + error.message; })
          .then(function (text) { document.getElementById('post-result').textContent = text; });
        Promise.all([ws, post]).then(function () { document.getElementById('done').textContent = 'done'; });
        </script>
        </body></html>

        """
    }
}

/// Another origin on this machine: Python's http.server on 127.0.0.1, port 0, serving one page from a temporary
/// folder. Stopped by PID.
struct OtherOriginSite {
    let child: ChildProcess
    let port: Int
    let directory: URL

    static func start(page: String) async throws -> OtherOriginSite {
        let directory = try TempDirectory.make()
        try page.write(to: directory.appendingPathComponent("probe.html"), atomically: true, encoding: .utf8)
        let python = try Tool.path("python3").map(URL.init(fileURLWithPath:)) ?? { throw ChildError("python3 is not installed") }()
        let child = try ChildProcess(
            executable: python, arguments: ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", directory.path])
        let out = try await child.waitForStdout(containing: "Serving HTTP on 127.0.0.1 port ")
        let tail = out.components(separatedBy: "Serving HTTP on 127.0.0.1 port ").last ?? ""
        guard let port = Int(tail.prefix { $0.isNumber }) else { throw ChildError("no port in: \(out)") }
        return OtherOriginSite(child: child, port: port, directory: directory)
    }

    func stop() {
        child.terminate()
        try? FileManager.default.removeItem(at: directory)
    }
}
