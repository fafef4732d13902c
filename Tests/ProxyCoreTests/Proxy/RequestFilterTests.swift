import Testing

@testable import ProxyCore

/// kubectl's `FilterServer` semantics (KUBECTL-PROXY.md §0.2, §0.3, §1.7), with proxyd's one deliberate difference:
/// `Host: [::1]:8001` is accepted (kubernetes/kubernetes#77496).
@Suite struct RequestFilterTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var method = "GET"
        var path = "/api/v1/pods"
        var host = "localhost:8001"
        var accepted: Bool
        var note: String
        var testDescription: String { "\(note): \(method) \(path) Host=\(host) → \(accepted ? "accept" : "403")" }
    }

    static let defaultFilterCases: [Case] = [
        // Hosts: the port is removed, any port passes.
        Case(host: "localhost:8001", accepted: true, note: "localhost with port"),
        Case(host: "localhost", accepted: true, note: "localhost without port"),
        Case(host: "localhost:9999", accepted: true, note: "any port"),
        Case(host: "127.0.0.1:1", accepted: true, note: "127.0.0.1 any port"),
        Case(host: "127.0.0.1", accepted: true, note: "127.0.0.1 bare"),
        Case(host: "localhost:", accepted: true, note: "empty port, as Go's SplitHostPort"),
        Case(host: "[::1]:8001", accepted: true, note: "IPv6 loopback with port (deliberate fix of #77496)"),
        Case(host: "[::1]", accepted: true, note: "bare bracketed IPv6 loopback"),
        Case(host: "::1", accepted: false, note: "unbracketed IPv6 is ambiguous, used as is"),
        Case(host: "LOCALHOST", accepted: false, note: "case-sensitive"),
        Case(host: "LOCALHOST:8001", accepted: false, note: "case-sensitive with port"),
        Case(host: "Localhost", accepted: false, note: "case-sensitive mixed"),
        Case(host: "localhost.", accepted: false, note: "trailing dot"),
        Case(host: "localhost.:8001", accepted: false, note: "trailing dot with port"),
        Case(host: "127.0.0.1.nip.io", accepted: false, note: "DNS rebinding name"),
        Case(host: "localhost.evil.com", accepted: false, note: "suffix"),
        Case(host: "evil.localhost", accepted: false, note: "prefix"),
        Case(host: "127a0b0c1", accepted: false, note: "dots are escaped in the default"),
        Case(host: "", accepted: false, note: "empty Host"),
        Case(host: "[::2]:8001", accepted: false, note: "other IPv6"),
        Case(host: "[::1]x", accepted: false, note: "junk after bracket"),
        Case(host: "example.com", accepted: false, note: "foreign host"),
        Case(host: "127.0.0.1:8001:1", accepted: false, note: "two colons: used as is"),
        // Service and pod hosts (RFC 6761 *.localhost names: no DNS can rebind them).
        Case(host: "grafana.monitoring.svc.localhost:8001", accepted: true, note: "service host"),
        Case(host: "web.default.pod.localhost", accepted: true, note: "pod host without port"),
        Case(host: "https--443.dash.kube-system.svc.localhost:8001", accepted: true, note: "https port form"),
        Case(host: "Grafana.Monitoring.SVC.LOCALHOST:8001", accepted: true, note: "service host in upper case"),
        Case(host: "grafana.monitoring.svc.localhost.evil.com", accepted: false, note: "service host as a prefix"),
        Case(host: "grafana.monitoring.svc.localhostx", accepted: false, note: "not .localhost"),
        Case(host: "grafana.monitoring.svcxlocalhost", accepted: false, note: "dots are escaped"),
        // Default reject-paths: exec and attach, anchored only at the start.
        Case(path: "/api/v1/namespaces/default/pods/foo/exec", accepted: false, note: "exec"),
        Case(path: "/api/v1/namespaces/default/pods/foo/attach", accepted: false, note: "attach"),
        Case(path: "/api/v1/namespaces/default/pods/foo/execfoo", accepted: false, note: "execfoo"),
        Case(path: "/api/v1/namespaces/default/pods/foo/exec/", accepted: false, note: "exec/"),
        Case(path: "/api/v1/pods/foo/exec", accepted: false, note: "cluster-scoped form"),
        Case(path: "/api/v1/namespaces/default/pods/attachfoo", accepted: true, note: "pod named attachfoo"),
        Case(path: "/api/v1/namespaces/default/pods/execfoo", accepted: true, note: "pod named execfoo"),
        Case(path: "/api/v1/namespaces/default/pods/foo/portforward", accepted: true, note: "port-forward"),
        Case(path: "/api/v1/namespaces/default/pods/foo/ephemeralcontainers", accepted: true, note: "ephemeral"),
        Case(path: "/api/v1/nodes/n1/proxy/exec/default/foo/c", accepted: false, note: "kubelet exec via node proxy (proxyd only)"),
        Case(path: "/apis/apps/v1/namespaces/default/pods/foo/exec", accepted: true, note: "anchored at /api/"),
        Case(path: "/custom/api/v1/namespaces/default/pods/foo/exec", accepted: true, note: "anchored at start"),
        Case(path: "/", accepted: true, note: "root"),
        Case(path: "", accepted: true, note: "empty path matches ^.*"),
        // Default reject-methods `^$` rejects only the empty method.
        Case(method: "POST", accepted: true, note: "POST"),
        Case(method: "DELETE", accepted: true, note: "DELETE"),
        Case(method: "", accepted: false, note: "empty method"),
        // Order: reject-paths wins whatever the host.
        Case(path: "/api/v1/namespaces/default/pods/foo/exec", host: "localhost", accepted: false, note: "good host"),
    ]

    @Test(arguments: defaultFilterCases)
    func defaultFilter(_ c: Case) throws {
        let filter = try RequestFilter()
        #expect(filter.accepts(method: c.method, path: c.path, host: c.host) == c.accepted)
    }

    @Test func defaultsAreKubectls() {
        // kubectl's three, plus proxyd's service and pod hosts.
        #expect(RequestFilter.defaultAcceptHosts.hasPrefix(#"^localhost$,^127\.0\.0\.1$,^\[::1\]$,"#))
        #expect(RequestFilter.defaultAcceptHosts == #"^localhost$,^127\.0\.0\.1$,^\[::1\]$,(?i)\.(svc|pod)\.localhost$"#)
        #expect(RequestFilter.defaultAcceptOrigins == "")
        #expect(RequestFilter.defaultAcceptPaths == "^.*")
        // kubectl's two, then proxyd's node-proxy pattern (NodeProxyRejectTests).
        #expect(RequestFilter.defaultRejectPaths.hasPrefix("^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach,"))
        #expect(RequestFilter.defaultRejectMethods == "^$")
    }

    struct HostCase: Sendable, CustomTestStringConvertible {
        var host: String
        var expected: String
        var testDescription: String { "\(host) → \(expected)" }
    }

    @Test(arguments: [
        HostCase(host: "localhost:8001", expected: "localhost"),
        HostCase(host: "localhost", expected: "localhost"),
        HostCase(host: "localhost:", expected: "localhost"),
        HostCase(host: "127.0.0.1:1", expected: "127.0.0.1"),
        HostCase(host: "[::1]:8001", expected: "[::1]"),
        HostCase(host: "[::1]", expected: "[::1]"),
        HostCase(host: "[::1]:", expected: "[::1]"),
        HostCase(host: "[::1]:80a", expected: "[::1]:80a"),
        HostCase(host: "[::1", expected: "[::1"),
        HostCase(host: "::1", expected: "::1"),
        HostCase(host: "a:b:c", expected: "a:b:c"),
        HostCase(host: "", expected: ""),
    ])
    func hostWithoutPort(_ c: HostCase) {
        #expect(RequestFilter.hostWithoutPort(c.host) == c.expected)
    }

    struct CustomCase: Sendable, CustomTestStringConvertible {
        var acceptHosts = RequestFilter.defaultAcceptHosts
        var acceptPaths = RequestFilter.defaultAcceptPaths
        var rejectPaths = RequestFilter.defaultRejectPaths
        var rejectMethods = RequestFilter.defaultRejectMethods
        var method = "GET"
        var path = "/api/v1/pods"
        var host = "localhost:8001"
        var accepted: Bool
        var note: String
        var testDescription: String { note }
    }

    static let customCases: [CustomCase] = [
        // Method patterns are unanchored and case-sensitive.
        CustomCase(rejectMethods: "POST", method: "POST", accepted: false, note: "POST rejected"),
        CustomCase(rejectMethods: "POST", method: "POSTX", accepted: false, note: "POSTX rejected by unanchored POST"),
        CustomCase(rejectMethods: "POST", method: "XPOST", accepted: false, note: "XPOST rejected by unanchored POST"),
        CustomCase(rejectMethods: "POST", method: "post", accepted: true, note: "lowercase post not rejected"),
        CustomCase(rejectMethods: "POST", method: "GET", accepted: true, note: "GET passes POST pattern"),
        CustomCase(rejectMethods: "^POST$,^DELETE$", method: "DELETE", accepted: false, note: "second of two"),
        CustomCase(rejectMethods: "^POST$", method: "POSTX", accepted: true, note: "anchored pattern"),
        CustomCase(rejectMethods: "", method: "", accepted: true, note: "empty reject-methods rejects nothing"),
        // Empty lists match nothing.
        CustomCase(acceptHosts: "", accepted: false, note: "empty accept-hosts matches nothing"),
        CustomCase(acceptPaths: "", accepted: false, note: "empty accept-paths matches nothing"),
        CustomCase(rejectPaths: "", path: "/api/v1/namespaces/d/pods/p/exec", accepted: true,
                   note: "empty reject-paths lets exec through"),
        // Order: reject-paths before reject-methods before accept-paths AND accept-hosts.
        CustomCase(acceptHosts: ".*", acceptPaths: ".*", rejectPaths: "secret", method: "GET", path: "/secret",
                   host: "anything", accepted: false, note: "reject-paths beats accept lists"),
        CustomCase(acceptHosts: ".*", acceptPaths: ".*", rejectPaths: "", rejectMethods: "GET", host: "x",
                   accepted: false, note: "reject-methods beats accept lists"),
        CustomCase(acceptHosts: "^localhost$", acceptPaths: "^/api/", path: "/apis/x", accepted: false,
                   note: "path must match too"),
        CustomCase(acceptHosts: "^nothere$", acceptPaths: "^/api/", path: "/api/x", accepted: false,
                   note: "host must match too"),
        CustomCase(acceptHosts: "^localhost$", acceptPaths: "^/api/,^/version$", path: "/version", accepted: true,
                   note: "any of several accept-paths"),
        CustomCase(acceptHosts: "local", host: "notlocalhost:1", accepted: true, note: "unanchored host pattern"),
        CustomCase(acceptHosts: "^example\\.com$", host: "example.com:443", accepted: true, note: "custom host"),
    ]

    @Test(arguments: customCases)
    func customFilter(_ c: CustomCase) throws {
        let filter = try RequestFilter(
            acceptHosts: c.acceptHosts, acceptPaths: c.acceptPaths, rejectPaths: c.rejectPaths,
            rejectMethods: c.rejectMethods)
        #expect(filter.accepts(method: c.method, path: c.path, host: c.host) == c.accepted)
    }

    /// The verdict names the check that refused, for logs and per-filter counters.
    @Test(arguments: [
        ("GET", "/api/v1/namespaces/d/pods/p/exec", "localhost", FilterVerdict.reject(.path)),
        ("", "/api", "localhost", .reject(.method)),
        ("GET", "/api", "evil.example", .reject(.host)),
        ("GET", "/api", "localhost:8001", .accept),
    ])
    func verdictNamesTheRejectingCheck(method: String, path: String, host: String, expected: FilterVerdict) throws {
        let filter = try RequestFilter()
        #expect(filter.verdict(method: method, path: path, host: host) == expected)
        #expect(RequestFilterCache(filter: filter).verdict(method: method, path: path, host: host) == expected)
    }

    @Test func acceptPathsMissIsAPathRejection() throws {
        let filter = try RequestFilter(acceptPaths: "^/api/")
        #expect(filter.verdict(method: "GET", path: "/apis", host: "localhost") == .reject(.path))
    }

    @Test func cacheAddsTheOriginGuardAfterKubectlsChecks() throws {
        let cache = RequestFilterCache(filter: try RequestFilter())
        let authority = try HostAuthority.parse("localhost:8001").get()
        let post = OriginGuard.Request(method: "POST", isUpgrade: false, origin: "http://evil.example")
        let refused = cache.check(method: "POST", path: "/api/v1/pods", host: "localhost:8001", browser: post, authority: authority)
        #expect(refused.verdict == .reject(.origin))
        // kubectl's checks come first: a bad host is a host rejection whatever the origin.
        let badHost = cache.check(method: "POST", path: "/api/v1/pods", host: "evil.example", browser: post, authority: authority)
        #expect(badHost.verdict == .reject(.host))
        let curl = OriginGuard.Request(method: "POST", isUpgrade: false, origin: nil)
        #expect(cache.check(method: "POST", path: "/api/v1/pods", host: "localhost:8001", browser: curl, authority: authority).verdict == .accept)
        #expect(cache.check(method: "POST", path: "/api/v1/pods", host: "localhost:8001", browser: nil, authority: authority) == (.accept, .sameOrigin))
    }

    @Test func invalidOriginPatternNamesItsFlag() {
        #expect {
            _ = try RequestFilter(acceptOrigins: "(")
        } throws: { error in
            (error as? FilterError)?.flag == "accept-origins"
        }
    }

    @Test func invalidPatternNamesFlagAndPattern() {
        #expect {
            _ = try RequestFilter(rejectPaths: "^/ok,^/api/(unclosed")
        } throws: { error in
            guard let e = error as? FilterError else { return false }
            return e.flag == "reject-paths" && e.pattern == "^/api/(unclosed"
                && e.description
                    == "--reject-paths: error compiling regular expression \"^/api/(unclosed\": "
                    + "error parsing regexp: missing closing ): `^/api/(unclosed`"
        }
    }

    @Test func invalidMethodPatternNamesItsFlag() {
        #expect {
            _ = try RequestFilter(rejectMethods: "[")
        } throws: { error in
            (error as? FilterError)?.description
                == "--reject-methods: error compiling regular expression \"[\": error parsing regexp: missing closing ]: `[`"
        }
    }

    /// A trailing comma adds the empty pattern, which matches everything (kubectl's `MakeRegexpArray` keeps it).
    @Test func emptyListElementMatchesEverything() throws {
        let filter = try RequestFilter(rejectMethods: "^$,")
        #expect(filter.accepts(method: "GET", path: "/api", host: "localhost") == false)
    }

    /// Patterns are compiled once and shared: a pathological operator pattern stays linear per request.
    @Test func pathologicalPatternIsLinear() throws {
        let filter = try RequestFilter(rejectPaths: "^/(a+)+$")
        let path = "/" + String(repeating: "a", count: 20_000) + "!"
        #expect(filter.accepts(method: "GET", path: path, host: "localhost"))
        #expect(filter.accepts(method: "GET", path: "/aaa", host: "localhost") == false)
    }
}
