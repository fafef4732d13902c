import Testing
@testable import ProxyCore

/// A client connection keeps its request parser only while part of a request is being received: between requests
/// (`isBetweenRequests`) it lets the parser go and makes a new one when bytes come (ClientConnection: at the start
/// of a watch or a followed log, and in the loop's once-a-second sweep). This wrapper does the same after every
/// feed, the most often a connection could, so the tests below show that nothing a client sends (keep-alive,
/// pipelining, heads and bodies split anywhere, upgrades, `Connection: close`, errors) parses differently.
private struct RecreatedRequestParser: ParserUnderTest {
    var parser: HTTP1RequestParser?
    /// How many parsers were made over the run.
    var made = 0

    mutating func feedNormalized(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) -> [NormalizedEvent] {
        var current = parser ?? HTTP1RequestParser()
        if parser == nil { made += 1 }
        defer { parser = current.isBetweenRequests ? nil : current }
        return try current.feedNormalized(bytes)
    }

    mutating func finishNormalized() throws(HTTP1Error) -> [NormalizedEvent] {
        // As ClientConnection at the client's EOF: no parser means nothing was left half-received.
        guard var current = parser else { return [] }
        defer { parser = current }
        return try current.finishNormalized()
    }

    mutating func takeRemainingBytes() -> [UInt8] {
        guard var current = parser else { return [] }
        defer { parser = current }
        return current.takeRemainingBytes()
    }
}

@Suite("HTTP1RequestParser made per request")
struct HTTP1RequestParserRecreationTests {
    @Test("valid requests give the same events with a parser made per request, however they are split",
          arguments: validRequests)
    func validFixture(_ fixture: RequestFixture) {
        let one = outcomesForAllSplits(HTTP1RequestParser(), bytes(fixture.raw))
        let recreated = outcomesForAllSplits(RecreatedRequestParser(), bytes(fixture.raw))
        #expect(recreated.whole == one.whole)
        #expect(recreated.whole.events == fixture.expected)
        #expect(recreated.mismatches.isEmpty, "\(recreated.mismatches.prefix(3))")
    }

    @Test("rejections are the same with a parser made per request", arguments: rejectedRequests)
    func rejection(_ c: RejectionCase) {
        for cuts in [[], Array(0..<c.raw.count)] {
            let recreated = run(RecreatedRequestParser(), c.raw, cuts: cuts, finish: false)
            #expect(recreated == run(HTTP1RequestParser(), c.raw, cuts: cuts, finish: false))
            #expect(recreated.error?.status == c.status)
        }
    }

    /// Several keep-alive requests, the first split across many reads, then two pipelined in one read with a third
    /// cut in half: a new parser for each request that starts in a read of its own, none while a head is open.
    @Test func keepAliveAndPipelinedRequestsUseANewParserEachTime() throws {
        let first = bytes("GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        let pipelined = bytes("GET /b HTTP/1.1\r\nHost: a\r\n\r\nPOST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyzGET /d HT")
        let rest = bytes("TP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n")
        var parser = RecreatedRequestParser()
        var events: [NormalizedEvent] = []
        for b in first { events += try parser.feedNormalized([b][...]) }
        #expect(parser.made == 1)
        #expect(parser.parser == nil, "between requests the parser is gone")
        events += try parser.feedNormalized(pipelined[...])
        #expect(parser.made == 2)
        #expect(parser.parser != nil, "a head is half received")
        events += try parser.feedNormalized(rest[...])
        #expect(parser.made == 2)
        #expect(parser.parser != nil, "after Connection: close the parser stays, to discard what follows")
        #expect(events == [
            requestHead("GET", "/api/v1/pods?watch=1", [("Host", "a")]), .end,
            requestHead("GET", "/b", [("Host", "a")]), .end,
            requestHead("POST", "/c", [("Host", "a"), ("Content-Length", "3")]), .body("xyz"), .end,
            requestHead("GET", "/d", [("Host", "a"), ("Connection", "close")]), .end,
        ])
    }

    @Test func isBetweenRequestsOnlyWhenNothingIsPending() throws {
        var parser = HTTP1RequestParser()
        #expect(parser.isBetweenRequests)
        _ = try parser.feed(bytes("\r\n")[...])  // empty lines before a request line are ignored
        #expect(parser.isBetweenRequests)
        _ = try parser.feed(bytes("GE")[...])
        #expect(!parser.isBetweenRequests)
        _ = try parser.feed(bytes("T / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nh")[...])
        #expect(!parser.isBetweenRequests)
        _ = try parser.feed(bytes("i")[...])
        #expect(parser.isBetweenRequests)

        var closing = HTTP1RequestParser()
        _ = try closing.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")[...])
        #expect(!closing.isBetweenRequests)

        var upgrading = HTTP1RequestParser()
        _ = try upgrading.feed(bytes("GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")[...])
        #expect(!upgrading.isBetweenRequests)

        var failed = HTTP1RequestParser()
        #expect(throws: HTTP1Error.self) { _ = try failed.feed(bytes("GET / HTTP/1.1\r\n folded\r\n\r\n")[...]) }
        #expect(!failed.isBetweenRequests)

        var finished = HTTP1RequestParser()
        try finished.finish()
        #expect(!finished.isBetweenRequests)
    }
}
