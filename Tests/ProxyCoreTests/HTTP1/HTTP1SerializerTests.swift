import Testing
@testable import ProxyCore

@Suite("HTTP1Serializer")
struct HTTP1SerializerTests {
    private func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    @Test func responseHeadUsesStandardReasonWhenEmpty() {
        let head = HTTPResponseHead(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain"), ("Content-Length", "2")]))
        #expect(text(HTTP1Serializer.responseHead(head)) == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n")
        #expect(text(HTTP1Serializer.responseHead(HTTPResponseHead(status: 404, reason: "Nope"))) == "HTTP/1.1 404 Nope\r\n\r\n")
        #expect(text(HTTP1Serializer.responseHead(HTTPResponseHead(status: 431))) == "HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
        #expect(text(HTTP1Serializer.responseHead(HTTPResponseHead(status: 599))) == "HTTP/1.1 599 \r\n\r\n")
        // Always HTTP/1.1, whatever version the head carries.
        #expect(text(HTTP1Serializer.responseHead(HTTPResponseHead(status: 204, version: .http1_0))) == "HTTP/1.1 204 No Content\r\n\r\n")
    }

    @Test(arguments: [
        (100, "Continue"), (101, "Switching Protocols"), (200, "OK"), (201, "Created"), (204, "No Content"),
        (301, "Moved Permanently"), (304, "Not Modified"), (400, "Bad Request"), (401, "Unauthorized"),
        (403, "Forbidden"), (404, "Not Found"), (413, "Content Too Large"), (414, "URI Too Long"),
        (429, "Too Many Requests"), (500, "Internal Server Error"), (501, "Not Implemented"), (502, "Bad Gateway"),
        (503, "Service Unavailable"), (504, "Gateway Timeout"), (505, "HTTP Version Not Supported"), (299, ""),
    ])
    func reasonPhrases(_ status: Int, _ phrase: String) {
        #expect(HTTP1Serializer.reasonPhrase(for: status) == phrase)
    }

    @Test func requestHead() {
        let out = HTTP1Serializer.requestHead(
            method: "GET", target: "/api/v1/pods?watch=1",
            headers: HTTPHeaders([("Host", "k8s:6443"), ("Upgrade", "websocket")])
        )
        #expect(text(out) == "GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: k8s:6443\r\nUpgrade: websocket\r\n\r\n")
    }

    @Test func chunks() {
        #expect(text(HTTP1Serializer.chunk(bytes("hello")[...])) == "5\r\nhello\r\n")
        #expect(text(HTTP1Serializer.chunk([UInt8](repeating: 0x61, count: 255)[...])) == "ff\r\n" + String(repeating: "a", count: 255) + "\r\n")
        #expect(text(HTTP1Serializer.chunk([UInt8](repeating: 0x61, count: 4096)[...])).hasPrefix("1000\r\n"))
        #expect(HTTP1Serializer.chunk([][...]).isEmpty)
        #expect(text(HTTP1Serializer.lastChunk) == "0\r\n\r\n")
    }

    @Test func refusesToSplitResponses() {
        let head = HTTPResponseHead(status: 200, reason: "OK\r\nX-Injected: 1", headers: HTTPHeaders([
            ("X-A", "v\r\nSet-Cookie: evil"), ("Bad Name", "dropped"), ("", "dropped"), ("X-B", "a\u{0}b"),
        ]))
        #expect(text(HTTP1Serializer.responseHead(head)) == "HTTP/1.1 200 OK  X-Injected: 1\r\nX-A: v  Set-Cookie: evil\r\nX-B: a b\r\n\r\n")
        let req = HTTP1Serializer.requestHead(method: "GET\r\n", target: "/a b\r\n\u{e9}", headers: HTTPHeaders())
        #expect(text(req) == "GET /a%20b%0D%0A%C3%A9 HTTP/1.1\r\n\r\n")
    }

    @Test func serializedRequestParsesBack() throws {
        var headers = HTTPHeaders([("Host", "a"), ("Transfer-Encoding", "chunked")])
        headers.add(name: "X-List", value: "1, 2")
        var wire = HTTP1Serializer.requestHead(method: "POST", target: "/x?y", headers: headers)
        wire += HTTP1Serializer.chunk(bytes("hello ")[...]) + HTTP1Serializer.chunk(bytes("world")[...]) + HTTP1Serializer.lastChunk
        let outcome = run(HTTP1RequestParser(), wire, cuts: [])
        #expect(outcome.error == nil)
        #expect(outcome.events == [.request(HTTPRequestHead(method: "POST", target: "/x?y", headers: headers)), .body("hello world"), .end])
    }

    @Test func serializedResponseParsesBack() {
        let head = HTTPResponseHead(status: 201, headers: HTTPHeaders([("Content-Length", "3")]))
        let outcome = run(HTTP1ResponseParser(requestMethod: "POST"), HTTP1Serializer.responseHead(head) + bytes("abc"), cuts: [])
        #expect(outcome.events == [.response(HTTPResponseHead(status: 201, reason: "Created", headers: head.headers)), .body("abc"), .end])
    }

    @Test func errorDescription() {
        let e = HTTP1Error(status: 400, reason: "bare LF line ending")
        #expect(e.description == "HTTP/1 error 400: bare LF line ending")
    }
}

@Suite("Header name comparison")
struct HeaderNameComparisonTests {
    @Test func equalIgnoringASCIICaseOnly() {
        #expect("Content-Length".equalsIgnoringASCIICase("content-length"))
        #expect("X-FOO-bar".equalsIgnoringASCIICase("x-foo-BAR"))
        #expect("".equalsIgnoringASCIICase(""))
        #expect(!"content-length".equalsIgnoringASCIICase("content-lengt"))
        #expect(!"abc".equalsIgnoringASCIICase("abd"))
        // Pairs that differ only in bit 0x20 but are not letters must not compare equal.
        #expect(!"@".equalsIgnoringASCIICase("`"))
        #expect(!"[".equalsIgnoringASCIICase("{"))
        #expect(!"]".equalsIgnoringASCIICase("}"))
        #expect(!"^".equalsIgnoringASCIICase("~"))
        // No Unicode folding: é (C3 A9) vs É (C3 89) differ only in bit 0x20 of the second byte.
        #expect(!"é".equalsIgnoringASCIICase("É"))
        #expect("é".equalsIgnoringASCIICase("é"))
        // Long (heap) strings as well as small ones.
        let long = String(repeating: "Header-Name-", count: 10)
        #expect(long.equalsIgnoringASCIICase(long.lowercased()))
        #expect(!long.equalsIgnoringASCIICase(long.lowercased() + "x"))
    }

    @Test func headerLookupsUseIt() {
        let headers = HTTPHeaders([("Content-Type", "a"), ("x-Trace", "b"), ("X-TRACE", "c")])
        #expect(headers.first("content-type") == "a")
        #expect(headers.values("X-Trace") == ["b", "c"])
        #expect(!headers.contains("content-typ"))
    }
}
