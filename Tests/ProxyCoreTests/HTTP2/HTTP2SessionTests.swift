import CNghttp2
import Testing
@testable import ProxyCore

/// Client `HTTP2Session` against an in-memory nghttp2 server (`TestH2Server`).
@Suite struct HTTP2SessionTests {
    private func makeClient(_ delegate: RecordingSessionDelegate, streamWindow: Int32 = 1 << 20,
                            connectionWindow: Int32 = 16 << 20) throws -> HTTP2Session {
        try HTTP2Session(delegate: delegate, streamWindow: streamWindow, connectionWindow: connectionWindow)
    }

    private func get(_ client: HTTP2Session, _ path: String = "/api/v1/pods",
                     headers: HTTPHeaders = HTTPHeaders()) throws -> Int32 {
        try client.submitRequest(method: "GET", scheme: "https", authority: "kube.example:6443", path: path,
                                 headers: headers, hasBody: false)
    }

    private static func pattern(_ count: Int, seed: UInt8 = 7) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ ($0 >> 12)) }
    }

    @Test func getRoundTripWithHeadersAndData() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        server.onRequestEnd = { server, id in
            server.respond(stream: id, headers: [("content-type", "application/json"), ("X-Trace", "abc")],
                           body: Array(#"{"kind":"PodList"}"#.utf8))
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "ignored.example")
        headers.add(name: "Connection", value: "keep-alive")
        headers.add(name: "Keep-Alive", value: "timeout=5")
        headers.add(name: "Proxy-Connection", value: "keep-alive")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(name: "Upgrade", value: "websocket")
        headers.add(name: "TE", value: "gzip")
        headers.add(name: "Accept", value: "application/json")
        headers.add(name: "User-Agent", value: "kubectl/v1.30")
        headers.add(name: ":path", value: "/evil")
        let id = try get(client, headers: headers)
        #expect(id == 1)
        #expect(client.activeStreamCount == 1)
        try pump(client, server)

        let request = try #require(server.requests[id])
        #expect(request.headers.prefix(4).map(\.name) == [":method", ":scheme", ":authority", ":path"])
        #expect(request.header(":method") == "GET")
        #expect(request.header(":authority") == "kube.example:6443")
        #expect(request.header(":path") == "/api/v1/pods")
        #expect(request.header("accept") == "application/json")
        #expect(request.header("user-agent") == "kubectl/v1.30")
        for dropped in ["host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"] {
            #expect(request.header(dropped) == nil, "\(dropped) must not be sent over h2")
        }
        #expect(request.headers.filter { $0.name == ":path" }.count == 1)
        #expect(request.ended)

        let head = try #require(delegate.heads[id])
        #expect(head.status == 200)
        #expect(head.headers.first("content-type") == "application/json")
        #expect(head.headers.first("x-trace") == "abc")
        #expect(!head.headers.contains(":status"))
        #expect(delegate.bodies[id] == Array(#"{"kind":"PodList"}"#.utf8))
        #expect(delegate.log[id] == ["head", "data", "end", "close"])
        #expect(delegate.closed[id] == 0)
        #expect(client.activeStreamCount == 0)
        #expect(client.wantsReadOrWrite)
        #expect(client.canOpenStream)
    }

    @Test func teTrailersIsKeptAndNamesAreLowercased() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        var headers = HTTPHeaders()
        headers.add(name: "TE", value: " Trailers ")
        headers.add(name: "X-Mixed-Case", value: "Value Kept")
        let id = try get(client, headers: headers)
        try pump(client, server)
        let request = try #require(server.requests[id])
        #expect(request.header("te") == "trailers")
        #expect(request.header("x-mixed-case") == "Value Kept")
    }

    @Test func invalidHeaderValueIsRejected() throws {
        let client = try makeClient(RecordingSessionDelegate())
        var headers = HTTPHeaders()
        headers.add(name: "X-Injected", value: "a\r\nevil: 1")
        #expect(throws: HTTP2Error.self) { try get(client, headers: headers) }
        do {
            _ = try get(client, headers: headers)
        } catch {
            #expect((error as? HTTP2Error)?.detail == "invalid header field x-injected")
        }
        var badName = HTTPHeaders()
        badName.add(name: "Bad Name", value: "v")
        #expect(throws: HTTP2Error.self) { try get(client, headers: badName) }
        #expect(throws: HTTP2Error.self) { try get(client, "") }
        #expect(client.activeStreamCount == 0)
    }

    @Test func fiftyConcurrentStreamsOnOneSession() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        var ids: [Int32] = []
        for i in 0..<50 { ids.append(try get(client, "/api/v1/namespaces/ns\(i)/pods")) }
        #expect(client.activeStreamCount == 50)
        // Answer only once all 50 requests are in: they really are concurrent on the one connection.
        var answered = false
        server.onRequestEnd = { server, _ in
            guard !answered, server.requests.values.filter(\.ended).count == 50 else { return }
            answered = true
            for (id, request) in server.requests {
                let body = Array((request.header(":path")! + "|").utf8) + Self.pattern(20_000, seed: UInt8(id & 0xff))
                server.respond(stream: id, headers: [("content-length", "\(body.count)")], body: body)
            }
        }
        try pump(client, server)
        #expect(Set(server.requestOrder) == Set(ids))
        for (i, id) in ids.enumerated() {
            let expected = Array("/api/v1/namespaces/ns\(i)/pods|".utf8) + Self.pattern(20_000, seed: UInt8(id & 0xff))
            #expect(delegate.heads[id]?.status == 200)
            #expect(delegate.bodies[id]?.count == expected.count)
            #expect(delegate.bodies[id] == expected, "body of stream \(id) differs")
            #expect(delegate.log[id] == ["head", "data", "end", "close"], "stream \(id)")
            #expect(delegate.closed[id] == 0, "stream \(id)")
        }
        #expect(client.activeStreamCount == 0)
    }

    @Test func eightMiBRequestBodyStreamedWithDeferredAndResume() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        server.onRequestEnd = { server, id in server.respond(stream: id, status: "201", body: Array("ok".utf8)) }
        let id = try client.submitRequest(method: "POST", scheme: "https", authority: "kube.example",
                                          path: "/api/v1/namespaces/default/configmaps",
                                          headers: HTTPHeaders([("Content-Type", "application/octet-stream")]),
                                          hasBody: true)
        // No body bytes yet: HEADERS go out, the data provider returns DEFERRED.
        try pump(client, server)
        #expect(server.requests[id] != nil)
        #expect(server.requests[id]?.bodyCount == 0)
        #expect(server.requests[id]?.ended == false)

        let total = 8 << 20
        let body = Self.pattern(total)
        var expected = Checksum()
        expected.update(body)
        var offset = 0
        var sawBackpressure = false
        var chunkSize = 1000
        while offset < total {
            let end = min(offset + chunkSize, total)
            client.appendBody(Array(body[offset..<end]), stream: id)
            offset = end
            chunkSize = chunkSize < 300_000 ? chunkSize * 3 : 1 << 20
            // One shuttle round: the server's 64 KiB receive window lets only part of a large queue out.
            let out = client.takeOutput()
            if client.bufferedBodyBytes(stream: id) > 0 { sawBackpressure = true }
            try server.receive(out)
            try client.feed(server.send()[...])
        }
        client.endBody(stream: id)
        try pump(client, server)

        #expect(sawBackpressure)
        #expect(client.bufferedBodyBytes(stream: id) == 0)
        let request = try #require(server.requests[id])
        #expect(request.bodyCount == total)
        #expect(request.checksum == expected)
        #expect(request.ended)
        #expect(delegate.heads[id]?.status == 201)
        #expect(delegate.closed[id] == 0)
    }

    @Test func emptyBodyWithEndBodyOnly() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        server.onRequestEnd = { server, id in server.respond(stream: id, status: "204") }
        let id = try client.submitRequest(method: "DELETE", scheme: "https", authority: "k", path: "/x",
                                          headers: HTTPHeaders(), hasBody: true)
        try pump(client, server)
        client.endBody(stream: id)
        client.appendBody([1, 2, 3], stream: id)   // after endBody: ignored
        try pump(client, server)
        #expect(server.requests[id]?.ended == true)
        #expect(server.requests[id]?.bodyCount == 0)
        #expect(delegate.heads[id]?.status == 204)
        #expect(delegate.log[id] == ["head", "end", "close"])
    }

    @Test func flowControlHoldsTheServerAtTheStreamWindowUntilConsume() throws {
        let window: Int32 = 64 * 1024
        let delegate = RecordingSessionDelegate()
        delegate.autoConsume = false
        delegate.keepBodies = false
        let client = try makeClient(delegate, streamWindow: window)
        let server = TestH2Server()
        let total = 1 << 20
        server.onRequestEnd = { server, id in server.respond(stream: id, body: Self.pattern(total)) }
        let id = try get(client)
        try pump(client, server)
        // A slow client: nothing consumed, so the upstream is stuck at one stream window.
        let first = delegate.received[id, default: 0]
        #expect(first > 0)
        #expect(first <= Int(window))
        try pump(client, server)
        #expect(delegate.received[id, default: 0] == first)
        #expect(delegate.closed[id] == nil)

        var rounds = 0
        while delegate.closed[id] == nil, rounds < 1000 {
            let before = delegate.received[id, default: 0]
            client.consume(stream: id, bytes: before)   // over-asking is clamped to what is unconsumed
            try pump(client, server)
            #expect(delegate.received[id, default: 0] - before <= Int(window))
            rounds += 1
        }
        #expect(delegate.received[id] == total)
        #expect(delegate.closed[id] == 0)
        #expect(rounds >= total / Int(window) - 1)
    }

    @Test func rstStreamFromServerClosesWithItsErrorCode() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        server.onRequestEnd = { server, id in server.sendHeaders(stream: id, [(":status", "200")]) }
        let id = try get(client)
        let other = try get(client, "/healthz")
        try pump(client, server)
        #expect(delegate.heads[id]?.status == 200)
        server.reset(stream: id, errorCode: HTTP2ErrorCode.enhanceYourCalm)
        server.reset(stream: other, errorCode: HTTP2ErrorCode.enhanceYourCalm)
        try pump(client, server)
        #expect(delegate.closed[id] == HTTP2ErrorCode.enhanceYourCalm)
        #expect(delegate.closed[other] == HTTP2ErrorCode.enhanceYourCalm)
        #expect(delegate.log[id] == ["head", "close"])
        #expect(!delegate.ended.contains(id))
        #expect(client.activeStreamCount == 0)
        #expect(client.canOpenStream)
    }

    @Test func goAwayFromServerStopsNewStreamsAndRefusesLaterOnes() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        let first = try get(client)
        let second = try get(client, "/b")
        server.onRequestEnd = { server, id in
            guard id == second else { return }
            server.goAway(lastStreamID: first)
            server.respond(stream: first, body: Array("done".utf8))
        }
        #expect(client.lastGoAwayStreamID == nil)
        try pump(client, server)
        #expect(delegate.goAways.count == 1)
        #expect(delegate.goAways.first?.lastStreamID == first)
        #expect(delegate.goAways.first?.errorCode == 0)
        #expect(client.lastGoAwayStreamID == first)
        #expect(client.isGoingAway)
        #expect(!client.canOpenStream)
        #expect(delegate.closed[second] == HTTP2ErrorCode.refusedStream)
        #expect(delegate.closed[first] == 0)
        #expect(delegate.bodies[first] == Array("done".utf8))
        #expect(throws: HTTP2Error.self) { try get(client) }
        #expect(!client.wantsReadOrWrite)
    }

    /// What the balancer asks when a connection is lost: did a stream's HEADERS leave proxyd?
    @Test func requestWasSentOnceItsHeadersAreSerialised() throws {
        let client = try makeClient(RecordingSessionDelegate())
        let first = try get(client)
        #expect(!client.requestWasSent(stream: first))
        _ = client.takeOutput(max: 1 << 20)
        #expect(client.requestWasSent(stream: first))
        let second = try get(client, "/api/v1/namespaces")
        #expect(!client.requestWasSent(stream: second))
        #expect(client.requestWasSent(stream: first))
        _ = client.takeOutput(max: 1 << 20)
        #expect(client.requestWasSent(stream: second))
    }

    @Test func pingIsAcknowledged() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        try pump(client, server)
        client.ping()
        #expect(client.wantsReadOrWrite)
        try pump(client, server)
        #expect(delegate.pingAcks == 1)
    }

    @Test func remoteMaxConcurrentStreamsSeenAfterSettings() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server(settings: [(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 3)])
        #expect(client.remoteMaxConcurrentStreams == 100)
        try pump(client, server)
        #expect(delegate.settingsChanges >= 1)
        #expect(client.remoteMaxConcurrentStreams == 3)
        for _ in 0..<3 {
            #expect(client.canOpenStream)
            _ = try get(client)
        }
        #expect(client.activeStreamCount == 3)
        #expect(!client.canOpenStream)
    }

    @Test func unlimitedRemoteConcurrencyIsCappedTo100() throws {
        let client = try makeClient(RecordingSessionDelegate())
        let server = TestH2Server()   // announces no MAX_CONCURRENT_STREAMS: unlimited
        try pump(client, server)
        #expect(client.remoteMaxConcurrentStreams == 100)
    }

    @Test func clientResetMidResponseReleasesConnectionWindow() throws {
        let connectionWindow: Int32 = 1 << 20
        let delegate = RecordingSessionDelegate()
        delegate.autoConsume = false
        delegate.keepBodies = false
        let client = try makeClient(delegate, streamWindow: connectionWindow, connectionWindow: connectionWindow)
        let server = TestH2Server()
        let big = 3 << 20
        server.onRequestEnd = { server, id in
            server.respond(stream: id, body: Self.pattern(id == 1 ? big : Int(connectionWindow)))
        }
        let slow = try get(client)
        try pump(client, server)
        // Nothing consumed: the slow stream ate the whole connection window.
        let stuck = delegate.received[slow, default: 0]
        #expect(stuck > Int(connectionWindow) / 2)
        #expect(stuck <= Int(connectionWindow))

        // Consume part of it, then reset: the rest must go back to the connection window.
        client.consume(stream: slow, bytes: 1000)
        client.resetStream(slow)
        try pump(client, server)
        #expect(delegate.closed[slow] == HTTP2ErrorCode.cancel)
        #expect(server.closedStreams[slow] == HTTP2ErrorCode.cancel)
        client.consume(stream: slow, bytes: stuck)   // after the close: ignored, no double credit
        client.resetStream(slow)                      // closed: no-op

        // A second stream now gets a whole connection window of data even though stream 1 never consumed.
        delegate.autoConsume = true
        let fast = try get(client)
        try pump(client, server)
        #expect(delegate.received[fast] == Int(connectionWindow))
        #expect(delegate.closed[fast] == 0)
        #expect(stuck + delegate.received[fast, default: 0] > Int(connectionWindow))
        // Never more credit than the window we announced.
        #expect(server.connectionSendWindow <= connectionWindow)
        #expect(client.activeStreamCount == 0)
    }

    @Test func resetBeforeHeadersAreSentStillClosesTheStream() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        try pump(client, server)
        let id = try get(client)
        client.resetStream(id, errorCode: HTTP2ErrorCode.cancel)
        client.resetStream(12345)   // unknown: no-op
        try pump(client, server)
        #expect(delegate.closed[id] == HTTP2ErrorCode.cancel)
        #expect(delegate.log[id] == ["close"])
        #expect(client.activeStreamCount == 0)
    }

    @Test func delegateMayResetAndSubmitFromCallbacks() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        // Stream 1 cannot finish within one window, so it is still open when its head is delivered.
        server.onRequestEnd = { server, id in server.respond(stream: id, body: Self.pattern(id == 1 ? 3 << 20 : 200_000)) }
        var followUp: Int32?
        delegate.onHead = { session, stream in
            guard stream == 1 else { return }
            session.resetStream(stream)                              // from inside a delivery
            _ = session.takeOutput()                                 // nested takeOutput: bytes keep their order
        }
        delegate.onClose = { session, stream in
            guard stream == 1 else { return }
            followUp = try? session.submitRequest(method: "GET", scheme: "https", authority: "k", path: "/next",
                                                  headers: HTTPHeaders(), hasBody: false)
        }
        let id = try get(client)
        try pump(client, server)
        #expect(delegate.log[id] == ["head", "close"])   // no data after our reset
        #expect(delegate.closed[id] == HTTP2ErrorCode.cancel)
        let next = try #require(followUp)
        #expect(delegate.closed[next] == 0)
        #expect(delegate.received[next] == 200_000)
    }

    @Test func resetAfterTheStreamAlreadyEndedSuppressesTheRest() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        server.onRequestEnd = { server, id in server.respond(stream: id, body: Self.pattern(1000)) }
        // Head, data, END_STREAM and the close all arrive in one feed; the delegate resets at the head.
        delegate.onHead = { session, stream in session.resetStream(stream) }
        let id = try get(client)
        try pump(client, server)
        #expect(delegate.log[id] == ["head", "close"])
        #expect(delegate.closed[id] == 0)   // the stream really ended cleanly; no RST was sent
        #expect(server.closedStreams[id] == 0)
        #expect(client.activeStreamCount == 0)
    }

    @Test func interimHeadsIgnoredAndTrailersDropped() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        server.onRequestEnd = { server, id in
            server.sendHeaders(stream: id, [(":status", "103"), ("link", "</style.css>; rel=preload")])
            server.respond(stream: id, headers: [("content-type", "text/plain")], body: Array("hi".utf8),
                           trailers: [("grpc-status", "0")])
        }
        let id = try get(client)
        try pump(client, server)
        #expect(delegate.headCount[id] == 1)
        #expect(delegate.heads[id]?.status == 200)
        #expect(delegate.heads[id]?.headers.first("link") == nil)
        #expect(delegate.heads[id]?.headers.first("grpc-status") == nil)
        #expect(delegate.bodies[id] == Array("hi".utf8))
        #expect(delegate.log[id] == ["head", "data", "end", "close"])
        #expect(delegate.closed[id] == 0)
    }

    @Test func responseWithoutStatusIsResetWithProtocolError() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        server.onRequestEnd = { server, id in
            server.respond(stream: id, status: nil, headers: [("content-type", "text/plain")],
                           body: Array("x".utf8))
        }
        let id = try get(client)
        try pump(client, server)
        #expect(delegate.heads[id] == nil)
        #expect(delegate.closed[id] == HTTP2ErrorCode.protocolError)
        #expect(delegate.log[id] == ["close"])
        #expect(client.canOpenStream)   // a stream error, not a connection error
    }

    @Test func oversizedResponseHeadersResetOnlyThatStream() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        // An HPACK "bomb": one 3 KB field, then 94 one-byte references to it in the dynamic table. Small on the
        // wire (nghttp2 itself caps CONTINUATION frames), about 290 KB decoded: over our 256 KiB limit.
        let filler = String(repeating: "v", count: 3000)
        server.onRequestEnd = { server, id in
            let headers = id == 1 ? Array(repeating: ("x-filler", filler), count: 95) : []
            server.respond(stream: id, headers: headers, body: Array("ok".utf8))
        }
        let big = try get(client)
        try pump(client, server)
        #expect(delegate.heads[big] == nil)
        #expect(delegate.closed[big] == HTTP2ErrorCode.internalError)
        #expect(delegate.log[big] == ["close"])
        let small = try get(client)
        try pump(client, server)
        #expect(delegate.bodies[small] == Array("ok".utf8))
        #expect(delegate.closed[small] == 0)
    }

    @Test func continuationFloodIsFatalButDoesNotCrash() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        // 300 KB of distinct, unindexable header data: more CONTINUATION frames than nghttp2 accepts.
        server.onRequestEnd = { server, id in
            server.respond(stream: id, headers: (0..<10).map { ("x-filler-\($0)", String(repeating: "v", count: 30_000)) })
        }
        let id = try get(client)
        let error = #expect(throws: HTTP2Error.self) { try pump(client, server) }
        #expect(error?.function == "nghttp2_session_mem_recv")
        #expect(delegate.closed[id] == HTTP2ErrorCode.internalError)
        #expect(client.activeStreamCount == 0)
        #expect(!client.canOpenStream)
        #expect(!client.wantsReadOrWrite)
        #expect(client.takeOutput().isEmpty)
    }

    @Test func garbageInputThrowsAndClosesStreams() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let id = try get(client)
        _ = client.takeOutput()
        let garbage = Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".utf8)
        let error = #expect(throws: HTTP2Error.self) { try client.feed(garbage[...]) }
        #expect(error?.description.contains("GOAWAY(PROTOCOL_ERROR)") == true)
        #expect(delegate.closed[id] == HTTP2ErrorCode.protocolError)
        #expect(client.isGoingAway)
        #expect(!client.canOpenStream)
        let goAway = client.takeOutput()
        #expect(goAway.count >= 17)
        #expect(goAway[3] == UInt8(NGHTTP2_GOAWAY.rawValue))
        #expect(!client.wantsReadOrWrite)
        #expect(throws: HTTP2Error.self) { try client.feed([0, 0, 0, 4, 0, 0, 0, 0, 0][...]) }
    }

    @Test func randomBytesAfterHandshakeThrow() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        try pump(client, server)
        let id = try get(client)
        try pump(client, server)
        var generator = SystemRandomNumberGenerator()
        var noise = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
        noise[0...8] = [0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]  // oversized DATA frame header
        #expect(throws: HTTP2Error.self) { try client.feed(noise[...]) }
        #expect(delegate.closed[id] != nil)
        #expect(delegate.closed[id] != 0)
        _ = client.takeOutput()
        #expect(!client.wantsReadOrWrite)
    }

    @Test func localGoAwayLetsStreamsInFlightFinish() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let server = TestH2Server()
        let id = try get(client)
        client.goAway()
        #expect(!client.canOpenStream)
        #expect(throws: HTTP2Error.self) { try get(client) }
        server.onRequestEnd = { server, id in server.respond(stream: id, body: Array("bye".utf8)) }
        try pump(client, server)
        #expect(server.goAwaysReceived == [0])
        #expect(delegate.bodies[id] == Array("bye".utf8))
        #expect(delegate.closed[id] == 0)
        #expect(!client.wantsReadOrWrite)
    }

    @Test func abortAllStreamsClosesEveryOpenStream() throws {
        let delegate = RecordingSessionDelegate()
        let client = try makeClient(delegate)
        let a = try get(client), b = try get(client)
        client.abortAllStreams()
        #expect(delegate.closed[a] == HTTP2ErrorCode.internalError)
        #expect(delegate.closed[b] == HTTP2ErrorCode.internalError)
        #expect(client.activeStreamCount == 0)
        #expect(!client.canOpenStream)
    }

    @Test func invalidWindowThrows() {
        #expect(throws: HTTP2Error.self) { try HTTP2Session(delegate: RecordingSessionDelegate(), streamWindow: 0) }
    }

    @Test func errorDescriptionNamesFunctionAndText() {
        let error = HTTP2Error(code: NGHTTP2_ERR_PROTO.rawValue, function: "nghttp2_session_mem_recv")
        #expect(error.description == "nghttp2_session_mem_recv: Protocol error (-505)")
        #expect(HTTP2ErrorCode.name(7) == "REFUSED_STREAM")
    }
}
