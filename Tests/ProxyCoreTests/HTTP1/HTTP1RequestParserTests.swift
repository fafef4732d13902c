import Testing
@testable import ProxyCore

struct RequestFixture: CustomTestStringConvertible, Sendable {
    var name: String
    var raw: String
    var expected: [NormalizedEvent]
    var remaining: String = ""
    var testDescription: String { name }
}


let validRequests: [RequestFixture] = [
    RequestFixture(
        name: "simple GET",
        raw: "GET /api/v1/pods HTTP/1.1\r\nHost: localhost:8001\r\n\r\n",
        expected: [requestHead("GET", "/api/v1/pods", [("Host", "localhost:8001")]), .end]
    ),
    RequestFixture(
        name: "OWS trimmed, names keep spelling, empty value, obs-text",
        raw: "GET /x?y=1&z HTTP/1.1\r\nhOsT:a\r\nX-A:  v 1 \t\r\nX-Empty:\r\nX-U: caf\u{e9}\r\nAccept: */*\r\n\r\n",
        expected: [requestHead("GET", "/x?y=1&z", [
            ("hOsT", "a"), ("X-A", "v 1"), ("X-Empty", ""), ("X-U", "caf\u{e9}"), ("Accept", "*/*"),
        ]), .end]
    ),
    RequestFixture(
        name: "Content-Length body",
        raw: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        expected: [requestHead("POST", "/p", [("Host", "a"), ("Content-Length", "11")]), .body("hello world"), .end]
    ),
    RequestFixture(
        name: "Content-Length 0 and leading zeros",
        raw: "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nPUT /q HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc",
        expected: [
            requestHead("POST", "/p", [("Host", "a"), ("Content-Length", "0")]), .end,
            requestHead("PUT", "/q", [("Host", "a"), ("Content-Length", "003")]), .body("abc"), .end,
        ]
    ),
    RequestFixture(
        name: "chunked with extensions and trailers",
        raw: "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;ext=1\r\nhello\r\n6 ; a=\"q x\"\t;b\r\n world\r\n0;last\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
        expected: [
            requestHead("POST", "/c", [("Host", "a"), ("Transfer-Encoding", "chunked")]), .body("hello world"), .end,
        ]
    ),
    RequestFixture(
        name: "chunked uppercase hex, leading zeros, case-insensitive coding",
        raw: "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n000A\r\n0123456789\r\n1\r\n!\r\n00\r\n\r\n",
        expected: [
            requestHead("POST", "/c", [("Host", "a"), ("Transfer-Encoding", "Chunked")]), .body("0123456789!"), .end,
        ]
    ),
    RequestFixture(
        name: "pipelined GET, POST, chunked POST, GET",
        raw: "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            + "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            + "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
            + "GET /4 HTTP/1.1\r\nHost: a\r\n\r\n",
        expected: [
            requestHead("GET", "/1", [("Host", "a")]), .end,
            requestHead("POST", "/2", [("Host", "a"), ("Content-Length", "3")]), .body("abc"), .end,
            requestHead("POST", "/3", [("Host", "a"), ("Transfer-Encoding", "chunked")]), .body("de"), .end,
            requestHead("GET", "/4", [("Host", "a")]), .end,
        ]
    ),
    RequestFixture(
        name: "empty lines before a request line are ignored",
        raw: "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        expected: [requestHead("GET", "/", [("Host", "a")]), .end, requestHead("GET", "/2", [("Host", "a")]), .end]
    ),
    RequestFixture(
        name: "HTTP/1.0 without keep-alive: later bytes are discarded",
        raw: "GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n",
        expected: [requestHead("GET", "/", .http1_0, []), .end]
    ),
    RequestFixture(
        name: "HTTP/1.0 with keep-alive and Content-Length",
        raw: "POST /a HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.0\r\nHost: x\r\n\r\n",
        expected: [
            requestHead("POST", "/a", .http1_0, [("Connection", "Keep-Alive"), ("Content-Length", "2")]),
            .body("hi"), .end,
            requestHead("GET", "/b", .http1_0, [("Host", "x")]), .end,
        ]
    ),
    RequestFixture(
        name: "HTTP/1.1 Connection: close: later bytes are discarded",
        raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
        expected: [requestHead("GET", "/", [("Host", "a"), ("Connection", "close")]), .end]
    ),
    RequestFixture(
        name: "Expect: 100-continue",
        raw: "PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata",
        expected: [
            requestHead("PUT", "/e", [("Host", "a"), ("Expect", "100-continue"), ("Content-Length", "4")]),
            .body("data"), .end,
        ]
    ),
    RequestFixture(
        name: "WebSocket upgrade stops parsing; the rest is tunnel data",
        raw: "GET /api/v1/namespaces/d/pods/p/exec HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            + "\u{1}\u{2}GET / HTTP/1.1\r\n\r\n",
        expected: [
            requestHead("GET", "/api/v1/namespaces/d/pods/p/exec", [
                ("Host", "a"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
            ]), .end,
        ],
        remaining: "\u{1}\u{2}GET / HTTP/1.1\r\n\r\n"
    ),
    RequestFixture(
        name: "SPDY upgrade with a body: body first, then the tunnel",
        raw: "POST /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 2\r\n\r\nokTUNNEL",
        expected: [
            requestHead("POST", "/x", [
                ("Host", "a"), ("Connection", "keep-alive, upgrade"), ("Upgrade", "SPDY/3.1"), ("Content-Length", "2"),
            ]), .body("ok"), .end,
        ],
        remaining: "TUNNEL"
    ),
    RequestFixture(
        name: "Upgrade: h2c is not an upgrade; parsing continues",
        raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
            + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        expected: [
            requestHead("GET", "/", [
                ("Host", "a"), ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ]), .end,
            requestHead("GET", "/next", [("Host", "a")]), .end,
        ]
    ),
    RequestFixture(
        name: "CONNECT stops parsing",
        raw: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\u{16}\u{3}\u{1}",
        expected: [requestHead("CONNECT", "example.com:443", [("Host", "example.com:443")]), .end],
        remaining: "\u{16}\u{3}\u{1}"
    ),
    RequestFixture(
        name: "CONNECT to an IPv6 literal",
        raw: "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
        expected: [requestHead("CONNECT", "[::1]:8443", [("Host", "[::1]:8443")]), .end]
    ),
    RequestFixture(
        name: "OPTIONS *",
        raw: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        expected: [requestHead("OPTIONS", "*", [("Host", "a")]), .end]
    ),
    RequestFixture(
        name: "absolute-form target",
        raw: "GET http://example.com:8001/api?x=1 HTTP/1.1\r\nHost: example.com:8001\r\n\r\nGET HTTPS://e/ HTTP/1.1\r\nHost: e\r\n\r\n",
        expected: [
            requestHead("GET", "http://example.com:8001/api?x=1", [("Host", "example.com:8001")]), .end,
            requestHead("GET", "HTTPS://e/", [("Host", "e")]), .end,
        ]
    ),
    RequestFixture(
        name: "extension method and empty Host",
        raw: "M-SEARCH //x HTTP/1.1\r\nHost:\r\n\r\n",
        expected: [requestHead("M-SEARCH", "//x", [("Host", "")]), .end]
    ),
]

struct RejectionCase: CustomTestStringConvertible, Sendable {
    var name: String
    var raw: [UInt8]
    var status: Int
    var testDescription: String { "\(name) → \(status)" }

    init(_ name: String, _ raw: String, _ status: Int) {
        self.init(name, bytes(raw), status)
    }

    init(_ name: String, _ raw: [UInt8], _ status: Int) {
        self.name = name
        self.raw = raw
        self.status = status
    }
}

private func post(_ fields: String, _ body: String = "") -> String {
    "POST /p HTTP/1.1\r\nHost: a\r\n\(fields)\r\n\(body)"
}

private func chunked(_ body: String) -> String {
    post("Transfer-Encoding: chunked\r\n", body)
}

let rejectedRequests: [RejectionCase] = [
    // Framing conflicts and lengths.
    RejectionCase("Content-Length and Transfer-Encoding", post("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"), 400),
    RejectionCase("Transfer-Encoding and Content-Length", post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"), 400),
    RejectionCase("Content-Length list of identical values", post("Content-Length: 5, 5\r\n"), 400),
    RejectionCase("two identical Content-Length fields", post("Content-Length: 5\r\nContent-Length: 5\r\n"), 400),
    RejectionCase("two different Content-Length fields", post("Content-Length: 5\r\nContent-Length: 6\r\n"), 400),
    RejectionCase("Content-Length not a number", post("Content-Length: abc\r\n"), 400),
    RejectionCase("Content-Length negative", post("Content-Length: -1\r\n"), 400),
    RejectionCase("Content-Length with plus sign", post("Content-Length: +5\r\n"), 400),
    RejectionCase("Content-Length hex", post("Content-Length: 0x10\r\n"), 400),
    RejectionCase("Content-Length empty", post("Content-Length:\r\n"), 400),
    RejectionCase("Content-Length inner space", post("Content-Length: 1 2\r\n"), 400),
    RejectionCase("Content-Length overflow", post("Content-Length: 99999999999999999999\r\n"), 400),
    // Transfer codings.
    RejectionCase("Transfer-Encoding gzip alone", post("Transfer-Encoding: gzip\r\n"), 501),
    RejectionCase("Transfer-Encoding gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n"), 501),
    RejectionCase("Transfer-Encoding identity", post("Transfer-Encoding: identity\r\n"), 501),
    RejectionCase("Transfer-Encoding chunked, gzip", post("Transfer-Encoding: chunked, gzip\r\n"), 400),
    RejectionCase("Transfer-Encoding chunked twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400),
    RejectionCase("Transfer-Encoding chunked, chunked", post("Transfer-Encoding: chunked, chunked\r\n"), 400),
    RejectionCase("Transfer-Encoding empty", post("Transfer-Encoding:\r\n"), 400),
    RejectionCase("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    // Chunk sizes and chunk framing.
    RejectionCase("chunk size not hex", chunked("zz\r\n"), 400),
    RejectionCase("chunk size empty", chunked("\r\nabc\r\n"), 400),
    RejectionCase("chunk size negative", chunked("-5\r\nhello\r\n"), 400),
    RejectionCase("chunk size 0x prefix", chunked("0x5\r\nhello\r\n"), 400),
    RejectionCase("chunk size too many digits", chunked("00000000000000001\r\nx\r\n"), 400),
    RejectionCase("chunk size overflow", chunked("ffffffffffffffff\r\n"), 400),
    RejectionCase("chunk size with trailing space only", chunked("5 \r\nhello\r\n0\r\n\r\n"), 400),
    RejectionCase("chunk size with leading space", chunked(" 5\r\nhello\r\n0\r\n\r\n"), 400),
    RejectionCase("chunk extension with NUL", chunked("5;a\u{0}\r\nhello\r\n0\r\n\r\n"), 400),
    RejectionCase("chunk-size line too long", chunked("5;" + String(repeating: "a", count: 5000) + "\r\n"), 400),
    RejectionCase("chunk data longer than its size", chunked("3\r\nhello\r\n0\r\n\r\n"), 400),
    RejectionCase("chunk data followed by bare LF", chunked("5\r\nhello\n0\r\n\r\n"), 400),
    RejectionCase("chunk size line with bare LF", chunked("5\nhello\r\n0\r\n\r\n"), 400),
    RejectionCase("trailer obs-fold", chunked("0\r\nX: a\r\n b\r\n\r\n"), 400),
    RejectionCase("trailer without colon", chunked("0\r\nnope\r\n\r\n"), 400),
    RejectionCase("trailer section too large", chunked("0\r\nX: " + String(repeating: "t", count: 70_000) + "\r\n\r\n"), 431),
    RejectionCase("too many trailer fields", chunked("0\r\n" + String(repeating: "T: v\r\n", count: 101) + "\r\n"), 431),
    // Line structure.
    RejectionCase("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-Long: part one\r\n  part two\r\n\r\n", 400),
    RejectionCase("obs-fold with HTAB", "GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n", 400),
    RejectionCase("whitespace-led first field line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    RejectionCase("NUL in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n", 400),
    RejectionCase("NUL in the request-target", "GET /a\u{0}b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("NUL in the method", "G\u{0}T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("bare CR in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    RejectionCase("bare CR before CRLF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),
    RejectionCase("bare CR in the request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("bare CR as line ending", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    RejectionCase("bare LF line endings", "GET / HTTP/1.1\nHost: a\n\n", 400),
    RejectionCase("bare LF after a field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    RejectionCase("bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    RejectionCase("leading bare LF", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("DEL in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{7F}\r\n\r\n", 400),
    RejectionCase("control character in a field value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\u{1}\r\n\r\n", 400),
    // Tokens.
    RejectionCase("invalid character in method", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("non-ASCII method", "G\u{e9}T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("request line starting with SP", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("HTAB separator in request line", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("double space in request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("trailing space in request line", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    RejectionCase("request line without version", "GET /\r\nHost: a\r\n\r\n", 400),
    RejectionCase("space between field name and colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    RejectionCase("HTAB between field name and colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
    RejectionCase("space inside field name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", 400),
    RejectionCase("invalid character in field name", "GET / HTTP/1.1\r\nHost: a\r\nX@Y: z\r\n\r\n", 400),
    RejectionCase("non-ASCII field name", "GET / HTTP/1.1\r\nHost: a\r\nX\u{e9}: z\r\n\r\n", 400),
    RejectionCase("empty field name", "GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n", 400),
    RejectionCase("field line without colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    // Host.
    RejectionCase("HTTP/1.1 without Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    RejectionCase("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    RejectionCase("two identical Host fields", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
    RejectionCase("two Host fields in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    // Versions.
    RejectionCase("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    RejectionCase("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    RejectionCase("HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    RejectionCase("HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    RejectionCase("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("version with two-digit minor", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    RejectionCase("version without minor", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("version garbage", "GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400),
    // Request-target forms.
    RejectionCase("relative target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("asterisk-form outside OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("authority-form outside CONNECT", "GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("CONNECT with origin-form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("CONNECT without port", "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("CONNECT with a path", "CONNECT example.com:443/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("CONNECT with userinfo", "CONNECT u@example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("CONNECT with a body", "CONNECT e:443 HTTP/1.1\r\nHost: e:443\r\nContent-Length: 3\r\n\r\nabc", 400),
    RejectionCase("CONNECT chunked", "CONNECT e:443 HTTP/1.1\r\nHost: e:443\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    RejectionCase("absolute-form with another scheme", "GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("absolute-form without authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("target with a fragment", "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RejectionCase("non-ASCII target", "GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", 400),
]

@Suite("HTTP1RequestParser")
struct HTTP1RequestParserTests {
    @Test("valid requests give the same events however they are split", arguments: validRequests)
    func validFixture(_ fixture: RequestFixture) {
        let (whole, mismatches) = outcomesForAllSplits(HTTP1RequestParser(), bytes(fixture.raw))
        #expect(whole.error == nil)
        #expect(whole.events == fixture.expected)
        #expect(whole.remaining == bytes(fixture.remaining))
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3))")
    }

    @Test("rejections have the exact status, whole and byte by byte", arguments: rejectedRequests)
    func rejection(_ c: RejectionCase) {
        let whole = run(HTTP1RequestParser(), c.raw, cuts: [], finish: false)
        #expect(whole.error?.status == c.status, "\(whole)")
        let bytewise = run(HTTP1RequestParser(), c.raw, cuts: Array(0..<c.raw.count), finish: false)
        #expect(bytewise.error == whole.error)
    }

    @Test func bodySlicesAreViewsOfTheInput() throws {
        let head = bytes("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
        let input = head + bytes("hello")
        var parser = HTTP1RequestParser()
        let events = try parser.feed(input[...])
        guard case .body(let slice) = events[1] else {
            Issue.record("expected a body event, got \(events)")
            return
        }
        #expect(slice.startIndex == head.count && slice.endIndex == input.count)
        #expect(events.last == .end)
    }

    @Test func headProperties() throws {
        func parse(_ raw: String) throws -> HTTPRequestHead {
            var parser = HTTP1RequestParser()
            guard case .head(let head) = try parser.feed(bytes(raw)[...]).first else {
                throw HTTP1Error(status: 0, reason: "no head")
            }
            return head
        }
        let plain = try parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(plain.keepAlive && !plain.expectsContinue && !plain.isUpgrade && !plain.hasBody)
        #expect(plain.bodyFraming == .none)
        #expect(try !parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").keepAlive)
        #expect(try !parse("GET / HTTP/1.0\r\n\r\n").keepAlive)
        #expect(try parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keepAlive)
        #expect(try !parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n").keepAlive)
        #expect(try parse("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").expectsContinue)
        #expect(try !parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expectsContinue)
        let chunkedHead = try parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(chunkedHead.bodyFraming == .chunked && chunkedHead.hasBody)
        #expect(try parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\n").bodyFraming == .contentLength(7))
        #expect(try parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").bodyFraming == .none)
        // Upgrade needs both the Connection token and the Upgrade field, and something other than h2c.
        #expect(try parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").isUpgrade)
        #expect(try parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\n\r\n").isUpgrade)
        #expect(try !parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n").isUpgrade)
        #expect(try !parse("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").isUpgrade)
        #expect(try !parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").isUpgrade)
        #expect(try !parse("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").isUpgrade)
        #expect(try parse("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n").isConnect)
    }

    @Test func upgradeStopsParsingAndKeepsLaterFeeds() throws {
        var parser = HTTP1RequestParser()
        let events = try parser.feed(bytes("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nab")[...])
        #expect(events.count == 2 && events.last == .end)
        #expect(parser.isTunneling)
        #expect(try parser.feed(bytes("cd\r\n\r\n")[...]).isEmpty)
        #expect(parser.takeRemainingBytes() == bytes("abcd\r\n\r\n"))
        #expect(parser.takeRemainingBytes().isEmpty)
        #expect(try parser.feed(bytes("e")[...]).isEmpty)
        try parser.finish()
        #expect(parser.takeRemainingBytes() == bytes("e"))
    }

    @Test func requestLineLimitGives414EvenBeforeTheLineEnds() {
        let long = "GET /" + String(repeating: "a", count: 16 * 1024) + " HTTP/1.1\r\nHost: a\r\n\r\n"
        #expect(run(HTTP1RequestParser(), bytes(long), cuts: []).error?.status == 414)
        // No CRLF yet: the limit is enforced while the line is still arriving.
        var parser = HTTP1RequestParser()
        #expect(throws: HTTP1Error.self) { _ = try parser.feed(bytes("GET /" + String(repeating: "a", count: 17_000))[...]) }
        var tiny = HTTP1RequestParser(limits: HTTP1Limits(requestLine: 24))
        #expect(run(tiny, bytes("GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n"), cuts: []).error == nil)  // exactly 24
        #expect(run(tiny, bytes("GET /01234567890 HTTP/1.1\r\nHost: a\r\n\r\n"), cuts: []).error?.status == 414)
        #expect(throws: HTTP1Error(status: 414, reason: "request line longer than 24 bytes")) {
            _ = try tiny.feed(bytes("GET /01234567890123456789012")[...])
        }
    }

    @Test func headerLimitsGive431() {
        let big = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 64 * 1024) + "\r\n\r\n"
        #expect(run(HTTP1RequestParser(), bytes(big), cuts: []).error?.status == 431)
        let fields100 = "GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "X: y\r\n", count: 99) + "\r\n"
        #expect(run(HTTP1RequestParser(), bytes(fields100), cuts: []).error == nil)
        let fields101 = "GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "X: y\r\n", count: 100) + "\r\n"
        #expect(run(HTTP1RequestParser(), bytes(fields101), cuts: []).error?.status == 431)
        // Exactly at the byte limit passes; one more byte fails. Field lines "X: y\r\n" are 6 bytes, "\r\n" ends.
        let limits = HTTP1Limits(headerBytes: 6 * 3 + 2)
        let atLimit = "GET / HTTP/1.0\r\nH: a\r\nX: y\r\nZ: w\r\n\r\n"
        #expect(run(HTTP1RequestParser(limits: limits), bytes(atLimit), cuts: []).error == nil)
        let over = "GET / HTTP/1.0\r\nHo: a\r\nX: y\r\nZ: w\r\n\r\n"
        #expect(run(HTTP1RequestParser(limits: limits), bytes(over), cuts: []).error?.status == 431)
        // Lots of headers arriving slowly: rejected before the head ends.
        var parser = HTTP1RequestParser()
        #expect(throws: HTTP1Error.self) {
            _ = try parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 70_000))[...])
        }
    }

    @Test func truncatedRequestsFailOnFinish() {
        let cases = [
            "G",
            "GET / HTTP/1.1\r\nHost: a\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n\r",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n",
            "\r",
        ]
        for raw in cases {
            let outcome = run(HTTP1RequestParser(), bytes(raw), cuts: [])
            #expect(outcome.error?.status == 400, "\(raw.debugDescription)")
        }
        for raw in ["", "\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.0\r\n\r\nGET /partial"] {
            #expect(run(HTTP1RequestParser(), bytes(raw), cuts: []).error == nil, "\(raw.debugDescription)")
        }
    }

    @Test func staysFailedAfterAnError() throws {
        var parser = HTTP1RequestParser()
        let error = try #require(#expect(throws: HTTP1Error.self) { _ = try parser.feed(bytes("GET / HTTP/9.9\r\n")[...]) })
        #expect(error.status == 505)
        #expect(throws: error) { _ = try parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")[...]) }
        #expect(throws: error) { try parser.finish() }
        #expect(!parser.hasPartialMessage)
    }

    @Test func hasPartialMessageTracksProgress() throws {
        var parser = HTTP1RequestParser()
        #expect(!parser.hasPartialMessage)
        _ = try parser.feed(bytes("GE")[...])
        #expect(parser.hasPartialMessage)
        _ = try parser.feed(bytes("T / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nh")[...])
        #expect(parser.hasPartialMessage)
        _ = try parser.feed(bytes("i")[...])
        #expect(!parser.hasPartialMessage)
    }
}
