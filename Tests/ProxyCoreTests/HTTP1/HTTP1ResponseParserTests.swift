import Testing
@testable import ProxyCore

struct ResponseFixture: CustomTestStringConvertible, Sendable {
    var name: String
    var method: String = "GET"
    var raw: String
    var expected: [NormalizedEvent]
    var remaining: String = ""
    var reusable: Bool
    var testDescription: String { name }
}

let validResponses: [ResponseFixture] = [
    ResponseFixture(
        name: "Content-Length",
        raw: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"kind\":\"x\"}\n",
        expected: [
            responseHead(200, "OK", [("Content-Type", "application/json"), ("Content-Length", "13")]),
            .body("{\"kind\":\"x\"}\n"), .end,
        ],
        reusable: true
    ),
    ResponseFixture(
        name: "chunked with extension and trailers",
        raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwatc\r\n3\r\nh!\n\r\n0\r\nGrpc-Status: 0\r\n\r\n",
        expected: [responseHead(200, "OK", [("Transfer-Encoding", "chunked")]), .body("watch!\n"), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "read until close",
        raw: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nlog line 1\nlog line 2\n",
        expected: [responseHead(200, "OK", [("Content-Type", "text/plain")]), .body("log line 1\nlog line 2\n"), .end],
        reusable: false
    ),
    ResponseFixture(
        name: "HEAD: Content-Length describes a body that is not sent",
        method: "HEAD",
        raw: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        expected: [responseHead(200, "OK", [("Content-Length", "1234")]), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "HEAD with chunked",
        method: "HEAD",
        raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        expected: [responseHead(200, "OK", [("Transfer-Encoding", "chunked")]), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "204 has no body",
        raw: "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n",
        expected: [responseHead(204, "No Content", [("X", "y")]), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "304 has no body despite Content-Length",
        raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"1\"\r\n\r\n",
        expected: [responseHead(304, "Not Modified", [("Content-Length", "50"), ("ETag", "\"1\"")]), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "100 Continue and 103 are skipped",
        method: "PUT",
        raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        expected: [responseHead(201, "Created", [("Content-Length", "2")]), .body("ok"), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "101 ends parsing; the rest is tunnel data",
        raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\u{81}\u{5}hello",
        expected: [
            responseHead(101, "Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade")]), .end,
        ],
        remaining: "\u{81}\u{5}hello",
        reusable: false
    ),
    ResponseFixture(
        name: "2xx to CONNECT ends parsing",
        method: "CONNECT",
        raw: "HTTP/1.1 200 Connection established\r\n\r\ntunnel",
        expected: [responseHead(200, "Connection established", []), .end],
        remaining: "tunnel",
        reusable: false
    ),
    ResponseFixture(
        name: "Content-Length 0",
        raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        expected: [responseHead(200, "OK", [("Content-Length", "0")]), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "Connection: close",
        raw: "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
        expected: [responseHead(404, "Not Found", [("Connection", "close"), ("Content-Length", "1")]), .body("x"), .end],
        reusable: false
    ),
    ResponseFixture(
        name: "HTTP/1.0 with keep-alive",
        raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
        expected: [responseHead(200, "OK", .http1_0, [("Connection", "keep-alive"), ("Content-Length", "1")]), .body("x"), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "HTTP/1.0 without keep-alive",
        raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        expected: [responseHead(200, "OK", .http1_0, [("Content-Length", "1")]), .body("x"), .end],
        reusable: false
    ),
    ResponseFixture(
        name: "empty reason and missing SP after the code",
        raw: "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        expected: [responseHead(200, "", [("Content-Length", "0")]), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "no SP after the code",
        raw: "HTTP/1.1 418\r\nContent-Length: 0\r\n\r\n",
        expected: [responseHead(418, "", [("Content-Length", "0")]), .end],
        reusable: true
    ),
    ResponseFixture(
        name: "bytes after the response are kept, not parsed",
        raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n",
        expected: [responseHead(200, "OK", [("Content-Length", "1")]), .body("x"), .end],
        remaining: "HTTP/1.1 200 OK\r\n",
        reusable: true
    ),
]

let rejectedResponses: [RejectionCase] = [
    RejectionCase("Content-Length and Transfer-Encoding", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
    RejectionCase("two Content-Length values", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 502),
    RejectionCase("invalid Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\n", 502),
    RejectionCase("Transfer-Encoding gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 502),
    RejectionCase("Transfer-Encoding gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 502),
    RejectionCase("Transfer-Encoding in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
    RejectionCase("bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 502),
    RejectionCase("HTTP/2.0 status line", "HTTP/2.0 200 OK\r\n\r\n", 502),
    RejectionCase("two-digit status", "HTTP/1.1 20 OK\r\n\r\n", 502),
    RejectionCase("status below 100", "HTTP/1.1 099 X\r\n\r\n", 502),
    RejectionCase("garbage status line", "SSH-2.0-OpenSSH\r\n\r\n", 502),
    RejectionCase("no SP after version", "HTTP/1.1200 OK\r\n\r\n", 502),
    RejectionCase("letter after the code", "HTTP/1.1 200OK\r\n\r\n", 502),
    RejectionCase("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 502),
    RejectionCase("bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", 502),
    RejectionCase("NUL in a field", "HTTP/1.1 200 OK\r\nX: \u{0}\r\n\r\n", 502),
    RejectionCase("control character in reason", "HTTP/1.1 200 O\u{1}K\r\n\r\n", 502),
    RejectionCase("header section too large", "HTTP/1.1 200 OK\r\nX: " + String(repeating: "x", count: 70_000) + "\r\n\r\n", 502),
    RejectionCase("too many fields", "HTTP/1.1 200 OK\r\n" + String(repeating: "X: y\r\n", count: 101) + "\r\n", 502),
]

@Suite("HTTP1ResponseParser")
struct HTTP1ResponseParserTests {
    @Test("valid responses give the same events however they are split", arguments: validResponses)
    func validFixture(_ fixture: ResponseFixture) {
        let parser = HTTP1ResponseParser(requestMethod: fixture.method)
        let (whole, mismatches) = outcomesForAllSplits(parser, bytes(fixture.raw))
        #expect(whole.error == nil)
        #expect(whole.events == fixture.expected)
        #expect(whole.remaining == bytes(fixture.remaining))
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3))")
    }

    @Test("fed as ByteBuffers: the same events however they are split", arguments: validResponses)
    func validFixtureFromBuffers(_ fixture: ResponseFixture) {
        let parser = BufferFedResponseParser(parser: HTTP1ResponseParser(requestMethod: fixture.method))
        let (whole, mismatches) = outcomesForAllSplits(parser, bytes(fixture.raw))
        #expect(whole.error == nil)
        #expect(whole.events == fixture.expected)
        #expect(whole.remaining == bytes(fixture.remaining))
        #expect(mismatches.isEmpty, "\(mismatches.prefix(3))")
    }

    @Test("fed as ByteBuffers: rejections are 502 as well", arguments: rejectedResponses)
    func rejectionFromBuffers(_ c: RejectionCase) {
        let parser = BufferFedResponseParser(parser: HTTP1ResponseParser(requestMethod: "GET"))
        let whole = run(parser, c.raw, cuts: [], finish: false)
        #expect(whole.error?.status == c.status, "\(whole)")
        let bytewise = run(parser, c.raw, cuts: Array(0..<c.raw.count), finish: false)
        #expect(bytewise.error == whole.error)
    }

    /// The body of a Content-Length or chunked response comes out as slices of the buffer fed, not copies.
    @Test(arguments: [
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n0123456789",
    ])
    func bodyBytesShareTheFedBuffer(raw: String) throws {
        var parser = HTTP1ResponseParser(requestMethod: "GET")
        var input = ByteBuffer(capacity: 4096)
        input.writeBytes(Array(raw.utf8))
        let events = try parser.feed(input)
        var body: [UInt8] = []
        for case .body(let slice) in events {
            #expect(slice.storageCapacity == 4096, "copied: \(slice)")
            body += slice.readableBytesArray
        }
        #expect(String(decoding: body, as: UTF8.self) == "0123456789")
    }

    @Test("connection reuse", arguments: validResponses)
    func reusable(_ fixture: ResponseFixture) throws {
        var parser = HTTP1ResponseParser(requestMethod: fixture.method)
        _ = try parser.feed(bytes(fixture.raw)[...])
        _ = try parser.finish()
        #expect(parser.connectionReusable == fixture.reusable)
    }

    @Test("rejections are 502, whole and byte by byte", arguments: rejectedResponses)
    func rejection(_ c: RejectionCase) {
        let whole = run(HTTP1ResponseParser(requestMethod: "GET"), c.raw, cuts: [], finish: false)
        #expect(whole.error?.status == c.status, "\(whole)")
        let bytewise = run(HTTP1ResponseParser(requestMethod: "GET"), c.raw, cuts: Array(0..<c.raw.count), finish: false)
        #expect(bytewise.error == whole.error)
    }

    @Test func readUntilCloseEndsOnlyInFinish() throws {
        var parser = HTTP1ResponseParser(requestMethod: "GET")
        let events = try parser.feed(bytes("HTTP/1.1 200 OK\r\n\r\nabc")[...])
        #expect(events.count == 2 && events.last == .body(bytes("abc")[...]))
        #expect(try parser.feed(bytes("def")[...]) == [.body(bytes("def")[...])])
        #expect(try parser.finish() == [.end])
        #expect(!parser.connectionReusable)
    }

    @Test func tunnelAfter101KeepsLaterFeeds() throws {
        var parser = HTTP1ResponseParser(requestMethod: "GET")
        let events = try parser.feed(bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\nab")[...])
        #expect(events.count == 2)
        #expect(try parser.feed(bytes("cd")[...]).isEmpty)
        #expect(parser.takeRemainingBytes() == bytes("abcd"))
        #expect(try parser.finish().isEmpty)
    }

    @Test func truncationAndEarlyCloseFail() throws {
        var empty = HTTP1ResponseParser(requestMethod: "GET")
        #expect(throws: HTTP1Error(status: 502, reason: "upstream closed the connection without sending a response")) {
            _ = try empty.finish()
        }
        for raw in [
            "HTTP/1.1 200",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            "HTTP/1.1 100 Continue\r\n\r\n",
        ] {
            var parser = HTTP1ResponseParser(requestMethod: "GET")
            _ = try parser.feed(bytes(raw)[...])
            #expect(throws: HTTP1Error(status: 502, reason: "upstream closed the connection in the middle of a response")) {
                _ = try parser.finish()
            }
        }
    }

    @Test func headKeepAlive() {
        #expect(HTTPResponseHead(status: 200).keepAlive)
        #expect(!HTTPResponseHead(status: 200, headers: HTTPHeaders([("Connection", "close")])).keepAlive)
        #expect(!HTTPResponseHead(status: 200, version: .http1_0).keepAlive)
    }
}
