import Testing

@testable import ProxyCore

/// The request side of forwarding (KUBECTL-PROXY.md §1.8, §2.3, §2.6): hop-by-hop removal, X-Forwarded-For,
/// User-Agent, and credentials that step aside for the client's own.
@Suite struct HeaderRewriterTests {
    static func pairs(_ h: HTTPHeaders) -> [String] { h.fields.map { "\($0.name): \($0.value)" } }

    static let bearer = CredentialSnapshot(authorization: "Bearer cfg-token", impersonation: HTTPHeaders())
    static let impersonating = CredentialSnapshot(
        authorization: "Bearer cfg-token",
        impersonation: HTTPHeaders([
            ("Impersonate-User", "bob"), ("Impersonate-Group", "g1"), ("Impersonate-Group", "g2"),
            ("Impersonate-Uid", "u-1"), ("Impersonate-Extra-Reason", "debug"),
        ]))

    struct Case: Sendable, CustomTestStringConvertible {
        var note: String
        var client: [String]
        var clientIP: String? = "127.0.0.1"
        var credentials: CredentialSnapshot = .none
        var isUpgrade = false
        var upstream: [String]
        var testDescription: String { note }
    }

    /// Headers are written "Name: value" so the cases read like the wire.
    static func parse(_ lines: [String]) -> HTTPHeaders {
        var h = HTTPHeaders()
        for line in lines {
            let colon = line.firstIndex(of: ":")!
            h.add(name: String(line[..<colon]), value: String(line[line.index(colon, offsetBy: 2)...]))
        }
        return h
    }

    static let cases: [Case] = [
        Case(
            note: "plain request: Host removed, XFF and UA added",
            client: ["Host: localhost:8001", "Accept: */*"],
            upstream: ["Accept: */*", "X-Forwarded-For: 127.0.0.1", "User-Agent: \(ProxyVersion.userAgent)"]),
        Case(
            note: "client UA kept",
            client: ["Host: localhost:8001", "User-Agent: curl/8.0"],
            upstream: ["User-Agent: curl/8.0", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "every hop-by-hop field removed",
            client: [
                "Connection: keep-alive", "Proxy-Connection: keep-alive", "Keep-Alive: timeout=5",
                "Proxy-Authenticate: Basic", "Proxy-Authorization: Basic eDp5", "TE: gzip", "Trailer: X-T",
                "Transfer-Encoding: chunked", "Upgrade: h2c", "User-Agent: u", "Accept: a",
            ],
            upstream: ["User-Agent: u", "Accept: a", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "hop-by-hop names are case-insensitive",
            client: ["CONNECTION: close", "keep-alive: 1", "TRANSFER-ENCODING: chunked", "User-Agent: u"],
            upstream: ["User-Agent: u", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "fields named in Connection removed",
            client: ["Connection: X-Foo, x-bar", "X-Foo: 1", "X-BAR: 2", "X-Baz: 3", "User-Agent: u"],
            upstream: ["X-Baz: 3", "User-Agent: u", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "fields named in several Connection fields removed",
            client: ["Connection: X-Foo", "Connection: X-Bar", "X-Foo: 1", "X-Bar: 2", "User-Agent: u"],
            upstream: ["User-Agent: u", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "TE: trailers kept",
            client: ["TE: trailers", "User-Agent: u"],
            upstream: ["User-Agent: u", "TE: trailers", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "TE with trailers among others becomes TE: trailers",
            client: ["TE: deflate, Trailers", "User-Agent: u"],
            upstream: ["User-Agent: u", "TE: trailers", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "TE named in Connection still keeps trailers",
            client: ["Connection: TE", "TE: trailers", "User-Agent: u"],
            upstream: ["User-Agent: u", "TE: trailers", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "XFF appended to the client's",
            client: ["X-Forwarded-For: 10.0.0.1", "User-Agent: u"],
            upstream: ["User-Agent: u", "X-Forwarded-For: 10.0.0.1, 127.0.0.1"]),
        Case(
            note: "XFF appended to several client fields",
            client: ["X-Forwarded-For: 10.0.0.1, 10.0.0.2", "x-forwarded-for: 10.0.0.3", "User-Agent: u"],
            upstream: ["User-Agent: u", "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"]),
        Case(
            note: "XFF for an IPv6 client has no brackets",
            client: ["User-Agent: u"], clientIP: "::1",
            upstream: ["User-Agent: u", "X-Forwarded-For: ::1"]),
        Case(
            note: "no XFF added for a unix-socket client",
            client: ["User-Agent: u"], clientIP: nil,
            upstream: ["User-Agent: u"]),
        Case(
            note: "unix-socket client's own XFF passes untouched",
            client: ["X-Forwarded-For: 10.0.0.1", "User-Agent: u"], clientIP: nil,
            upstream: ["X-Forwarded-For: 10.0.0.1", "User-Agent: u"]),
        Case(
            note: "X-Forwarded-Host/Proto and Forwarded pass through",
            client: ["X-Forwarded-Host: h", "X-Forwarded-Proto: https", "Forwarded: for=1.2.3.4", "User-Agent: u"],
            upstream: [
                "X-Forwarded-Host: h", "X-Forwarded-Proto: https", "Forwarded: for=1.2.3.4", "User-Agent: u",
                "X-Forwarded-For: 127.0.0.1",
            ]),
        Case(
            note: "Expect removed (proxyd answers 100-continue itself)",
            client: ["Expect: 100-continue", "User-Agent: u", "Content-Length: 3"],
            upstream: ["User-Agent: u", "Content-Length: 3", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "configured token added",
            client: ["User-Agent: u"], credentials: bearer,
            upstream: ["User-Agent: u", "X-Forwarded-For: 127.0.0.1", "Authorization: Bearer cfg-token"]),
        Case(
            note: "client Authorization wins over configured token",
            client: ["Authorization: Bearer client-tok", "User-Agent: u"], credentials: bearer,
            upstream: ["Authorization: Bearer client-tok", "User-Agent: u", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "client basic auth wins over configured token",
            client: ["authorization: Basic dTpw", "User-Agent: u"], credentials: bearer,
            upstream: ["authorization: Basic dTpw", "User-Agent: u", "X-Forwarded-For: 127.0.0.1"]),
        Case(
            note: "Proxy-Authorization is not Authorization",
            client: ["Proxy-Authorization: Basic dTpw", "User-Agent: u"], credentials: bearer,
            upstream: ["User-Agent: u", "X-Forwarded-For: 127.0.0.1", "Authorization: Bearer cfg-token"]),
        Case(
            note: "configured impersonation added",
            client: ["User-Agent: u"], credentials: impersonating,
            upstream: [
                "User-Agent: u", "X-Forwarded-For: 127.0.0.1", "Authorization: Bearer cfg-token",
                "Impersonate-User: bob", "Impersonate-Group: g1", "Impersonate-Group: g2", "Impersonate-Uid: u-1",
                "Impersonate-Extra-Reason: debug",
            ]),
        Case(
            note: "client Impersonate-User disables configured impersonation entirely",
            client: ["Impersonate-User: eve", "User-Agent: u"], credentials: impersonating,
            upstream: [
                "Impersonate-User: eve", "User-Agent: u", "X-Forwarded-For: 127.0.0.1",
                "Authorization: Bearer cfg-token",
            ]),
        Case(
            note: "client Impersonate-Group alone is combined with configured user",
            client: ["Impersonate-Group: mine", "User-Agent: u"], credentials: impersonating,
            upstream: [
                "Impersonate-Group: mine", "User-Agent: u", "X-Forwarded-For: 127.0.0.1",
                "Authorization: Bearer cfg-token", "Impersonate-User: bob", "Impersonate-Group: g1",
                "Impersonate-Group: g2", "Impersonate-Uid: u-1", "Impersonate-Extra-Reason: debug",
            ]),
        // client-go tests `len(req.Header.Get(name)) != 0`: an empty client value counts as absent and is replaced.
        Case(
            note: "empty client Authorization does not stop the configured token",
            client: ["Authorization: ", "User-Agent: u"], credentials: bearer,
            upstream: ["User-Agent: u", "X-Forwarded-For: 127.0.0.1", "Authorization: Bearer cfg-token"]),
        Case(
            note: "empty client Impersonate-User does not disable configured impersonation",
            client: ["Impersonate-User: ", "User-Agent: u"], credentials: impersonating,
            upstream: [
                "User-Agent: u", "X-Forwarded-For: 127.0.0.1", "Authorization: Bearer cfg-token",
                "Impersonate-User: bob", "Impersonate-Group: g1", "Impersonate-Group: g2", "Impersonate-Uid: u-1",
                "Impersonate-Extra-Reason: debug",
            ]),
        Case(
            note: "configured uid replaces a client Impersonate-Uid (client-go Sets it)",
            client: ["Impersonate-Uid: client-uid", "User-Agent: u"], credentials: impersonating,
            upstream: [
                "User-Agent: u", "X-Forwarded-For: 127.0.0.1", "Authorization: Bearer cfg-token",
                "Impersonate-User: bob", "Impersonate-Group: g1", "Impersonate-Group: g2", "Impersonate-Uid: u-1",
                "Impersonate-Extra-Reason: debug",
            ]),
        Case(
            note: "client Impersonate-Uid kept when no uid is configured",
            client: ["Impersonate-Uid: client-uid", "User-Agent: u"],
            credentials: CredentialSnapshot(
                authorization: nil, impersonation: HTTPHeaders([("Impersonate-User", "bob")])),
            upstream: [
                "Impersonate-Uid: client-uid", "User-Agent: u", "X-Forwarded-For: 127.0.0.1", "Impersonate-User: bob",
            ]),
        Case(
            note: "upgrade keeps Upgrade and Connection: Upgrade only",
            client: ["Connection: Upgrade, X-Foo", "Upgrade: SPDY/3.1", "X-Foo: 1", "User-Agent: u"],
            isUpgrade: true,
            upstream: ["Upgrade: SPDY/3.1", "User-Agent: u", "Connection: Upgrade", "X-Forwarded-For: 127.0.0.1"]),
    ]

    @Test(arguments: cases)
    func upstreamRequestHeaders(_ c: Case) {
        let out = HeaderRewriter.upstreamRequestHeaders(
            Self.parse(c.client), clientIP: c.clientIP, credentials: c.credentials, isUpgrade: c.isUpgrade)
        #expect(Self.pairs(out) == c.upstream)
    }

    @Test func clientResponseHeadersDropHopByHop() {
        let upstream = Self.parse([
            "Content-Type: application/json", "Connection: close, X-Hop", "X-Hop: 1", "Keep-Alive: timeout=5",
            "Transfer-Encoding: chunked", "Trailer: X-T", "Upgrade: h2", "Proxy-Authenticate: Basic",
            "Access-Control-Allow-Origin: *", "Location: https://apiserver/api", "Audit-Id: 1",
        ])
        #expect(Self.pairs(HeaderRewriter.clientResponseHeaders(upstream)) == [
            "Content-Type: application/json", "Access-Control-Allow-Origin: *", "Location: https://apiserver/api",
            "Audit-Id: 1",
        ])
    }

    @Test func removeHopByHopLeavesEndToEndFieldsInOrder() {
        var h = Self.parse(["A: 1", "Connection: b", "B: 2", "C: 3", "a: 4"])
        HeaderRewriter.removeHopByHop(&h)
        #expect(Self.pairs(h) == ["A: 1", "C: 3", "a: 4"])
    }

    @Test func userAgentMatchesVersion() {
        #expect(ProxyVersion.userAgent == "proxyd/\(ProxyVersion.version)")
    }
}
