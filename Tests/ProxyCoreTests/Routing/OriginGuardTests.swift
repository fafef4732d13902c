import Testing

@testable import ProxyCore

/// The cross-origin guard: the origin comparison and every decision, as pure values.
@Suite struct OriginGuardTests {
    private func authority(_ host: String) throws -> HostAuthority { try HostAuthority.parse(host).get() }

    @Test(arguments: [
        ("http://localhost:8001", "localhost:8001", true),
        ("http://LOCALHOST:8001", "localhost:8001", true),
        ("HTTP://localhost:8001", "LocalHost:8001", true),
        ("http://localhost", "localhost:80", true),  // default port normalised both ways
        ("http://localhost:80", "localhost", true),
        ("http://localhost", "localhost:", true),
        ("http://127.0.0.1:8001", "127.0.0.1:8001", true),
        ("http://[::1]:8001", "[::1]:8001", true),
        ("http://grafana.monitoring.svc.localhost:8001", "grafana.monitoring.svc.localhost:8001", true),
        ("http://localhost:8002", "localhost:8001", false),  // another port
        ("http://localhost", "localhost:8001", false),
        ("https://localhost:8001", "localhost:8001", false),  // another scheme
        ("http://127.0.0.1:8001", "localhost:8001", false),  // another host (same machine, other origin)
        ("http://grafana.monitoring.svc.localhost:8001", "localhost:8001", false),  // a dashboard calling the API
        ("http://localhost:8001", "grafana.monitoring.svc.localhost:8001", false),
        ("null", "localhost:8001", false),
        ("http://localhost:8001/", "localhost:8001", false),  // not a serialized origin
        ("http://user@localhost:8001", "localhost:8001", false),
        ("http://localhost:", "localhost", false),
        ("http://", "", false),
        ("http://evil.example, http://localhost:8001", "localhost:8001", false),  // several Origin fields
        ("", "localhost:8001", false),
    ])
    func sameOriginComparison(origin: String, host: String, same: Bool) throws {
        #expect(OriginGuard.isSameOrigin(origin, as: try authority(host)) == same)
    }

    private func decide(
        _ method: String = "GET", upgrade: Bool = false, origin: String?, site: String? = nil, mode: String? = nil,
        host: String = "localhost:8001", accept: String = ""
    ) throws -> OriginGuard.Decision {
        let guardian = OriginGuard(acceptOrigins: try PatternList(accept, flag: "accept-origins"))
        return guardian.decide(
            OriginGuard.Request(method: method, isUpgrade: upgrade, origin: origin, fetchSite: site, fetchMode: mode),
            authority: try authority(host))
    }

    private func isRefused(_ d: OriginGuard.Decision) -> Bool {
        if case .refused = d { return true }
        return false
    }

    @Test func clientsWithoutOriginAreNotAffected() throws {
        for method in ["GET", "POST", "DELETE", "PATCH", "PUT"] {
            #expect(try decide(method, origin: nil) == .sameOrigin)
            #expect(try decide(method, upgrade: true, origin: nil) == .sameOrigin)
        }
    }

    @Test func sameOriginPagesMayDoAnything() throws {
        #expect(try decide("POST", origin: "http://localhost:8001", site: "same-origin", mode: "cors") == .sameOrigin)
        #expect(try decide(upgrade: true, origin: "http://grafana.monitoring.svc.localhost:8001", site: "same-origin",
                           mode: "websocket", host: "grafana.monitoring.svc.localhost:8001") == .sameOrigin)
    }

    @Test(arguments: ["POST", "PUT", "PATCH", "DELETE", "CONNECT", "PROPFIND", "get"])
    func crossOriginUnsafeMethodsAreRefused(method: String) throws {
        #expect(isRefused(try decide(method, origin: "http://evil.example")))
    }

    @Test func crossOriginUpgradesAreRefusedWhateverTheMethod() throws {
        let d = try decide(upgrade: true, origin: "http://evil.example", site: "cross-site", mode: "websocket")
        guard case .refused(let origin, let message) = d else {
            Issue.record("not refused: \(d)")
            return
        }
        #expect(origin == "http://evil.example")
        #expect(message.contains("\"http://evil.example\""))
        #expect(message.contains("--accept-origins='^http://evil\\.example$'"))
        // A dashboard on its service host opening a WebSocket to the API's origin.
        #expect(isRefused(try decide(upgrade: true, origin: "http://grafana.monitoring.svc.localhost:8001", site: "same-site")))
        #expect(isRefused(try decide(upgrade: true, origin: "null")))
    }

    @Test func crossOriginSafeMethodsPassUnreadable() throws {
        for method in ["GET", "HEAD", "OPTIONS"] {
            #expect(try decide(method, origin: "http://grafana.monitoring.svc.localhost:8001", site: "same-site", mode: "cors")
                == .crossOriginAllowed(origin: "http://grafana.monitoring.svc.localhost:8001"))
        }
    }

    @Test func crossSiteRequestsMustBeNavigations() throws {
        // A cross-site <img>/<script> or no-cors fetch carries no Origin: Fetch Metadata tells.
        #expect(isRefused(try decide(origin: nil, site: "cross-site", mode: "no-cors")))
        #expect(isRefused(try decide(origin: "http://evil.example", site: "cross-site", mode: "cors")))
        #expect(isRefused(try decide("POST", origin: nil, site: "Cross-Site", mode: "navigate")))
        // A link followed from another site is a navigation: allowed.
        #expect(try decide(origin: nil, site: "cross-site", mode: "navigate") == .sameOrigin)
        #expect(try decide("HEAD", origin: nil, site: "cross-site", mode: "navigate") == .sameOrigin)
        // same-site and none are not cross-site.
        #expect(try decide(origin: nil, site: "same-site", mode: "no-cors") == .sameOrigin)
        #expect(try decide(origin: nil, site: "none", mode: "navigate") == .sameOrigin)
        guard case .refused(nil, let message) = try decide(origin: nil, site: "cross-site", mode: "no-cors") else {
            Issue.record("not refused")
            return
        }
        #expect(message.contains("--accept-origins"))
    }

    @Test func trustedOriginsPass() throws {
        let accept = #"^https://dash\.example\.com$"#
        #expect(try decide("POST", upgrade: true, origin: "https://dash.example.com", site: "cross-site", mode: "cors",
                           accept: accept) == .trusted(origin: "https://dash.example.com"))
        #expect(isRefused(try decide("POST", origin: "https://dash.example.com.evil", accept: accept)))
        #expect(isRefused(try decide("POST", origin: "null", accept: accept)))
        #expect(try decide("POST", origin: "null", accept: "^null$") == .trusted(origin: "null"))
    }

    @Test func suggestedPatternsAreSafeToPaste() {
        #expect(OriginGuard.suggestedPattern(for: "http://evil.example:8080") == #"^http://evil\.example:8080$"#)
        #expect(OriginGuard.suggestedPattern(for: "http://[::1]:8002") == #"^http://\[::1\]:8002$"#)
        #expect(OriginGuard.suggestedPattern(for: "null") == nil)
        #expect(OriginGuard.suggestedPattern(for: "http://a'b") == nil)
        #expect(OriginGuard.suggestedPattern(for: "http://a b") == nil)
        #expect(OriginGuard.refusal(what: "x", origin: "http://a'b").contains("--accept-origins"))
    }

    @Test func requestIsReadFromTheHead() throws {
        var head = HTTPRequestHead(method: "GET", target: "/", headers: HTTPHeaders([
            ("Host", "localhost"), ("Origin", "http://a"), ("origin", "http://b"), ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "websocket"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
        ]))
        let request = try #require(OriginGuard.Request(head))
        #expect(request.origin == "http://a, http://b")
        #expect(request.fetchSite == "cross-site")
        #expect(request.fetchMode == "websocket")
        #expect(request.isUpgrade)
        head.headers = HTTPHeaders([("Host", "localhost")])
        #expect(OriginGuard.Request(head) == nil)  // curl, kubectl: the guard has nothing to look at
        head.headers = HTTPHeaders([("Host", "localhost"), ("Sec-Fetch-Site", "cross-site")])
        #expect(OriginGuard.Request(head) == OriginGuard.Request(method: "GET", isUpgrade: false, origin: nil, fetchSite: "cross-site"))
    }
}
