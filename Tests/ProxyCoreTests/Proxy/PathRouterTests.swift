import Testing

@testable import ProxyCore

/// kubectl proxy's prefix table (KUBECTL-PROXY.md §1.6), one case per row, plus ServeMux path cleaning,
/// request-target parsing and percent-decoding.
@Suite struct PathRouterTests {
    typealias Decision = PathRouter.Decision

    struct Case: Sendable, CustomTestStringConvertible {
        var prefix = "/"
        var serverBase = ""
        /// The request-target as sent (`curl --path-as-is`).
        var target: String
        var expected: Decision
        var testDescription: String {
            "prefix=\(prefix) base=\(serverBase.isEmpty ? "-" : serverBase) \(target) → \(expected)"
        }
    }

    static func forward(_ upstream: String, _ filterPath: String) -> Decision {
        .forward(upstreamTarget: upstream, filterPath: filterPath)
    }

    /// §1.6, row by row (a row with two request paths gives two cases).
    static let prefixTable: [Case] = [
        Case(target: "/api/v1/pods?x=1", expected: forward("/api/v1/pods?x=1", "/api/v1/pods")),
        Case(target: "/", expected: forward("/", "/")),
        Case(target: "/api/v1/../v1/pods", expected: .redirect(location: "/api/v1/pods")),
        Case(target: "//api/v1/pods", expected: .redirect(location: "/api/v1/pods")),
        Case(target: "/api/v1/namespaces/a%2Fb/pods",
             expected: forward("/api/v1/namespaces/a%2Fb/pods", "/api/v1/namespaces/a/b/pods")),
        Case(prefix: "/custom/", target: "/custom/api/v1/pods", expected: forward("/api/v1/pods", "/api/v1/pods")),
        Case(prefix: "/custom/", target: "/custom", expected: .redirect(location: "/custom/")),
        Case(prefix: "/custom/", target: "/custom/", expected: forward("/", "/")),
        Case(prefix: "/custom/", target: "/api/v1/pods", expected: .notFound),
        Case(prefix: "/custom/", target: "/customx/api", expected: .notFound),
        Case(prefix: "/custom/", target: "/custom//api/v1/pods", expected: .redirect(location: "/custom/api/v1/pods")),
        // Deliberate difference: kubectl decodes %2F here (stale RawPath); proxyd keeps the raw encoding.
        Case(prefix: "/custom/", target: "/custom/api/v1/namespaces/a%2Fb/pods",
             expected: forward("/api/v1/namespaces/a%2Fb/pods", "/api/v1/namespaces/a/b/pods")),
        Case(prefix: "/k8s-api", target: "/k8s-api/v1/pods", expected: forward("/v1/pods", "/v1/pods")),
        Case(prefix: "/api/", target: "/api/v1/pods", expected: forward("/api/v1/pods", "/api/v1/pods")),
        Case(prefix: "/api/", target: "/apis/apps/v1", expected: .notFound),
        Case(prefix: "/api/", target: "/", expected: .notFound),
        Case(prefix: "/api/", target: "/api", expected: .redirect(location: "/api/")),
        Case(prefix: "/apifoo/", target: "/apifoo/api/v1/pods",
             expected: forward("/apifoo/api/v1/pods", "/apifoo/api/v1/pods")),
        // server https://h/base/ without --append-server-path: the router gets no base path.
        Case(target: "/api/v1/pods", expected: forward("/api/v1/pods", "/api/v1/pods")),
        Case(serverBase: "/base/", target: "/api/v1/pods", expected: forward("/base/api/v1/pods", "/api/v1/pods")),
        Case(serverBase: "/base/", target: "/", expected: forward("/base/", "/")),
        Case(prefix: "/custom/", serverBase: "/base", target: "/custom/api/v1/pods",
             expected: forward("/base/api/v1/pods", "/api/v1/pods")),
    ]

    static let cleaningAndEncoding: [Case] = [
        // Dot segments, encoded or not, and empty segments redirect to the cleaned path; nothing is forwarded.
        Case(target: "/api/v1/%2e%2e/v1/pods", expected: .redirect(location: "/api/v1/pods")),
        Case(target: "/api/v1/%2E%2E/%2e%2E/x", expected: .redirect(location: "/x")),
        Case(target: "/api/./v1/pods", expected: .redirect(location: "/api/v1/pods")),
        Case(target: "/api/%2e/v1/pods", expected: .redirect(location: "/api/v1/pods")),
        Case(target: "/api//v1//pods/", expected: .redirect(location: "/api/v1/pods/")),
        Case(target: "/api/v1/.", expected: .redirect(location: "/api/v1")),
        Case(target: "/api/v1/..", expected: .redirect(location: "/api")),
        Case(target: "/..", expected: .redirect(location: "/")),
        Case(target: "/../../etc/passwd", expected: .redirect(location: "/etc/passwd")),
        Case(target: "/api/v1/../v1/pods?watch=1&q=a%2Fb", expected: .redirect(location: "/api/v1/pods?watch=1&q=a%2Fb")),
        Case(prefix: "/custom/", target: "/custom/../api/v1/secrets", expected: .redirect(location: "/api/v1/secrets")),
        Case(prefix: "/custom/", target: "/custom/%2e%2e/api", expected: .redirect(location: "/api")),
        Case(prefix: "/custom/", target: "/custom?x=1", expected: .redirect(location: "/custom/?x=1")),
        // Redirect locations are re-escaped.
        Case(target: "/a b/../c d", expected: .redirect(location: "/c%20d")),
        Case(target: "/x/../a%3Fb", expected: .redirect(location: "/a%3Fb")),
        Case(target: "/x/../a%23b", expected: .redirect(location: "/a%23b")),
        Case(target: "/x/../a%25b", expected: .redirect(location: "/a%25b")),
        // Trailing slash and dot-containing names are not dot segments.
        Case(target: "/api/v1/pods/", expected: forward("/api/v1/pods/", "/api/v1/pods/")),
        Case(target: "/api/v1/.well-known/..x", expected: forward("/api/v1/.well-known/..x", "/api/v1/.well-known/..x")),
        // The filter sees the decoded path, upstream the raw one.
        Case(target: "/api/v1/namespaces/d/pods/p/%65xec",
             expected: forward("/api/v1/namespaces/d/pods/p/%65xec", "/api/v1/namespaces/d/pods/p/exec")),
        Case(target: "/api/v1/namespaces/a%20b", expected: forward("/api/v1/namespaces/a%20b", "/api/v1/namespaces/a b")),
        Case(target: "/api/v1/x+y", expected: forward("/api/v1/x+y", "/api/v1/x+y")),
        // Query strings are passed byte for byte, including the empty query and odd bytes.
        Case(target: "/api/v1/pods?q=a%2Fb&r=%20", expected: forward("/api/v1/pods?q=a%2Fb&r=%20", "/api/v1/pods")),
        Case(target: "/api/v1/pods?", expected: forward("/api/v1/pods?", "/api/v1/pods")),
        Case(target: "/api/v1/pods?a=%zz&b=+&c=?", expected: forward("/api/v1/pods?a=%zz&b=+&c=?", "/api/v1/pods")),
        Case(prefix: "/custom/", target: "/custom/api?labelSelector=a%3Db",
             expected: forward("/api?labelSelector=a%3Db", "/api")),
        // A prefix matched only after decoding: the stripped path is re-encoded.
        Case(prefix: "/custom/", target: "/c%75stom/api/v1/a%20b", expected: forward("/api/v1/a%20b", "/api/v1/a b")),
        // Invalid percent escapes.
        Case(target: "/api/v1/%zz", expected: .badRequest("invalid URL escape in path")),
        Case(target: "/api/v1/%2", expected: .badRequest("invalid URL escape in path")),
        Case(target: "/api/v1/%", expected: .badRequest("invalid URL escape in path")),
        Case(target: "/api/v1/%g0", expected: .badRequest("invalid URL escape in path")),
    ]

    @Test(arguments: prefixTable)
    func kubectlPrefixTable(_ c: Case) throws {
        try check(c)
    }

    @Test(arguments: cleaningAndEncoding)
    func cleaningDecodingAndQueries(_ c: Case) throws {
        try check(c)
    }

    private func check(_ c: Case) throws {
        let target = try #require(RequestTarget(c.target))
        let router = PathRouter(apiPrefix: c.prefix, serverBasePath: c.serverBase)
        #expect(router.route(rawPath: target.rawPath, rawQuery: target.rawQuery) == c.expected)
    }

    @Test(arguments: [
        ("/", "/"), ("custom", "/custom/"), ("/custom", "/custom/"), ("/custom/", "/custom/"), ("/k8s-api", "/k8s-api/"),
    ])
    func prefixIsNormalised(_ given: String, _ expected: String) {
        #expect(PathRouter(apiPrefix: given).apiPrefix == expected)
    }

    @Test(arguments: [("", ""), ("/", ""), ("/base", "/base"), ("/base/", "/base"), ("/a/b//", "/a/b")])
    func serverBasePathIsNormalised(_ given: String, _ expected: String) {
        #expect(PathRouter(serverBasePath: given).serverBasePath == expected)
    }

    // MARK: Router and default filter together (the router gives the filter the decoded path).

    @Test(arguments: [
        ("/api/v1/namespaces/d/pods/p/%65xec", false),
        ("/api/v1/namespaces/d/pods/p/%65%78%65%63", false),
        ("/api/v1/namespaces/d/pods/p%2Fexec", false),
        ("/api/v1/namespaces/d/pods/p/%61ttach", false),
        ("/api/v1/namespaces/d/pods/p/portforward", true),
        ("/api/v1/namespaces/d/pods/p/log", true),
    ])
    func filterSeesDecodedPath(_ target: String, _ accepted: Bool) throws {
        let t = try #require(RequestTarget(target))
        guard case .forward(_, let filterPath) = PathRouter().route(rawPath: t.rawPath, rawQuery: t.rawQuery) else {
            Issue.record("not forwarded")
            return
        }
        #expect(try RequestFilter().accepts(method: "GET", path: filterPath, host: "localhost:8001") == accepted)
    }

    @Test func filterSeesStrippedPath() throws {
        let router = PathRouter(apiPrefix: "/custom/")
        guard case .forward(let upstream, let filterPath) =
            router.route(rawPath: "/custom/api/v1/namespaces/d/pods/p/exec", rawQuery: "command=ls")
        else {
            Issue.record("not forwarded")
            return
        }
        #expect(upstream == "/api/v1/namespaces/d/pods/p/exec?command=ls")
        #expect(filterPath == "/api/v1/namespaces/d/pods/p/exec")
        #expect(try RequestFilter().accepts(method: "POST", path: filterPath, host: "localhost") == false)
    }

    // MARK: RequestTarget

    struct TargetCase: Sendable, CustomTestStringConvertible {
        var target: String
        var expected: RequestTarget?
        var testDescription: String { target.isEmpty ? "(empty)" : target }
    }

    static func rt(_ host: String?, _ path: String, _ query: String?) -> RequestTarget {
        var t = RequestTarget("/")!
        t.host = host
        t.rawPath = path
        t.rawQuery = query
        return t
    }

    static let targets: [TargetCase] = [
        TargetCase(target: "/api/v1/pods", expected: rt(nil, "/api/v1/pods", nil)),
        TargetCase(target: "/api/v1/pods?", expected: rt(nil, "/api/v1/pods", "")),
        TargetCase(target: "/api/v1/pods?a=1&b=%2F?c", expected: rt(nil, "/api/v1/pods", "a=1&b=%2F?c")),
        TargetCase(target: "/", expected: rt(nil, "/", nil)),
        TargetCase(target: "http://localhost:8001/api?x", expected: rt("localhost:8001", "/api", "x")),
        TargetCase(target: "HTTP://LocalHost:8001/api", expected: rt("LocalHost:8001", "/api", nil)),
        TargetCase(target: "https://127.0.0.1/api/v1", expected: rt("127.0.0.1", "/api/v1", nil)),
        TargetCase(target: "http://[::1]:8001/api", expected: rt("[::1]:8001", "/api", nil)),
        TargetCase(target: "http://localhost:8001", expected: rt("localhost:8001", "/", nil)),
        TargetCase(target: "http://localhost:8001?x=1", expected: rt("localhost:8001", "/", "x=1")),
        TargetCase(target: "http://localhost/a@b", expected: rt("localhost", "/a@b", nil)),
        TargetCase(target: "http://user@localhost:8001/api", expected: nil),
        TargetCase(target: "http://user:pw@localhost:8001/api", expected: nil),
        TargetCase(target: "/api#frag", expected: nil),
        TargetCase(target: "/api?x=1#frag", expected: nil),
        TargetCase(target: "http://localhost/api#frag", expected: nil),
        TargetCase(target: "*", expected: nil),
        TargetCase(target: "", expected: nil),
        TargetCase(target: "api/v1", expected: nil),
        TargetCase(target: "ftp://localhost/api", expected: nil),
        TargetCase(target: "localhost:8001", expected: nil),
    ]

    @Test(arguments: targets)
    func requestTarget(_ c: TargetCase) {
        #expect(RequestTarget(c.target) == c.expected)
    }

    @Test func absoluteFormHostFeedsTheFilter() throws {
        let t = try #require(RequestTarget("http://example.com/api/v1/pods"))
        #expect(t.host == "example.com")
        #expect(try RequestFilter().accepts(method: "GET", path: t.rawPath, host: t.host!) == false)
        let local = try #require(RequestTarget("http://localhost:8001/api/v1/pods"))
        #expect(try RequestFilter().accepts(method: "GET", path: local.rawPath, host: local.host!) == true)
    }

    // MARK: PercentEncoding

    @Test(arguments: [
        ("", ""), ("/plain", "/plain"), ("%41%42", "AB"), ("%2f%2F", "//"), ("a+b", "a+b"), ("%20", " "),
        ("%e2%82%ac", "€"), ("%25", "%"), ("%2541", "%41"),
    ])
    func decode(_ raw: String, _ decoded: String) {
        #expect(PercentEncoding.decode(raw) == decoded)
    }

    @Test(arguments: ["%", "%4", "%zz", "%4g", "a%", "%%41", "%-1"])
    func decodeRejectsMalformedEscapes(_ raw: String) {
        #expect(PercentEncoding.decode(raw) == nil)
    }

    @Test(arguments: [
        ("/api/v1/pods", "/api/v1/pods"), ("a b", "a%20b"), ("?#%", "%3F%23%25"), ("€", "%E2%82%AC"),
        ("-._~!$&'()*+,;=:@/", "-._~!$&'()*+,;=:@/"), ("\"<>\\^`{|}", "%22%3C%3E%5C%5E%60%7B%7C%7D"),
    ])
    func encodePath(_ s: String, _ encoded: String) {
        #expect(PercentEncoding.encodePath(s) == encoded)
    }

    @Test(arguments: [
        ("", "/"), ("/", "/"), ("//", "/"), ("/a/b", "/a/b"), ("/a/b/", "/a/b/"), ("/a/./b", "/a/b"),
        ("/a/../b", "/b"), ("/a/b/..", "/a"), ("/a/b/../", "/a/"), ("/../a", "/a"), ("a/b", "/a/b"),
        ("/a//b//", "/a/b/"), ("/.", "/"), ("/..", "/"),
    ])
    func cleanPath(_ p: String, _ cleaned: String) {
        #expect(PathRouter.cleanPath(p) == cleaned)
    }
}
