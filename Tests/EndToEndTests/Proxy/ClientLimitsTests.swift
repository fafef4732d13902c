import Foundation
import StandInServer
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 12 part 2: no client connection stays open for nothing. Timeouts are shortened with proxyd's hidden
/// `--header-timeout`, `--idle-timeout` and `--body-timeout` flags; proxyd checks deadlines once a second, so each
/// bound below allows for that tick plus a loaded machine.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ClientLimitsTests {
    /// Reads until EOF with `client`'s 10 s receive timeout; returns the text and how long it took.
    func readToEnd(_ client: RawClient) -> (String, Duration) {
        let start = ContinuousClock.now
        let text = client.readToEnd()
        return (text, ContinuousClock.now - start)
    }

    @Test func connectionThatSendsNothingGets408FromAccept() async throws {
        let h = try await Harness.start(proxyArguments: ["--header-timeout=1s"])
        let silent = try RawClient(port: h.proxy.port)
        let partial = try RawClient(port: h.proxy.port)
        partial.send("GET /api HTTP/1.1\r\nHost: loc")
        let (silentText, silentTime) = readToEnd(silent)
        #expect(silentText.hasPrefix("HTTP/1.1 408 "), "\(silentText)")
        #expect(silentText.contains("Connection: close"))
        #expect(silentTime < .seconds(8))
        let (partialText, _) = readToEnd(partial)
        #expect(partialText.hasPrefix("HTTP/1.1 408 "), "\(partialText)")
        // A client that is quick enough is served as usual.
        let ok = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"])
        #expect(ok.text == "200")
        await h.stop()
    }

    @Test func idleKeepAliveConnectionIsClosedAfterItsResponse() async throws {
        let h = try await Harness.start(proxyArguments: ["--idle-timeout=1s"])
        let client = KeepAliveClient(port: h.proxy.port)
        #expect(client.get("/api")?.status == 200)
        // It finished a response and never sent another request: closed (quietly) after the idle time.
        let raw = try RawClient(port: h.proxy.port)
        raw.send("GET /api HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let (text, time) = readToEnd(raw)
        #expect(text.hasPrefix("HTTP/1.1 200 "))
        #expect(!text.contains("408"))
        #expect(time < .seconds(8), "not closed within \(time)")
        client.close()
        await h.stop()
    }

    /// Found by scripts/soak: a watch client that went away while its watch was quiet kept its connection and
    /// upstream stream open until the next event. A half-closed client is still served while its response moves.
    @Test func clientGoneDuringAQuietWatchIsNoticed() async throws {
        let h = try await Harness.start(proxyArguments: ["--idle-timeout=1s"])
        let watcher = try RawClient(port: h.proxy.port)
        watcher.send("GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(watcher.read(until: "\r\n\r\n").hasPrefix("HTTP/1.1 200 "))
        #expect(await pollUntil { h.standIn.stats.activeWatches == 1 })
        watcher.close()
        #expect(await pollUntil { h.standIn.stats.activeWatches == 0 }, "the upstream watch outlived its client")

        let halfClosed = try RawClient(port: h.proxy.port)
        halfClosed.send("GET /standin/slow?delayMs=400&chunks=6 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        halfClosed.shutdownWrite()
        let text = halfClosed.readToEnd()
        #expect(text.contains("chunk 6/6"), "\(text)")
        #expect(text.hasSuffix("0\r\n\r\n"))
        await h.stop()
    }

    /// Found by scripts/soak: a connection closed after its answer (`Connection: close`, errors) waited out the whole
    /// 2 s linger even after the client's EOF, so a client opening connections in a loop piled up thousands of
    /// descriptors. Each must be released as soon as the client has closed its side.
    @Test func answeredConnectionsAreReleasedOnTheClientsEOF() async throws {
        let h = try await Harness.start()
        let baseline = h.proxy.child.openFDCount
        for _ in 0..<300 {
            let client = try RawClient(port: h.proxy.port)
            client.send("GET /nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(client.readToEnd().hasPrefix("HTTP/1.1 404 "))
            client.close()
        }
        // Closing is event-driven: allow a moment for the last EOFs, far below the 2 s linger.
        try await Task.sleep(for: .milliseconds(300))
        let open = h.proxy.child.openFDCount
        #expect(open - baseline < 30, "\(open - baseline) descriptors more than before the 300 connections")
        await h.stop()
    }

    @Test(arguments: [true, false])
    func stalledRequestBodyGets408AndTheUpstreamStreamIsReset(http2: Bool) async throws {
        let h = try await Harness.start(standIn: { $0.enableHTTP2 = http2 }, proxyArguments: ["--body-timeout=1s"])
        let client = try RawClient(port: h.proxy.port)
        client.send("POST /standin/echo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        let (text, time) = readToEnd(client)
        #expect(text.hasPrefix("HTTP/1.1 408 "), "\(text)")
        #expect(time < .seconds(8))
        // The stand-in saw its request end without a body: the stream was reset (or the connection closed).
        #expect(await pollUntil { h.standIn.stats.requestsAbandoned == 1 })
        await h.stop()
    }

    @Test func slowButMovingBodyIsNotCut() async throws {
        let h = try await Harness.start(proxyArguments: ["--body-timeout=1s"])
        let client = try RawClient(port: h.proxy.port)
        client.send("POST /standin/echo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n\r\n")
        for byte in "abcdef" {
            try await Task.sleep(for: .milliseconds(500))
            client.send(String(byte))
        }
        let response = client.read(until: "}")
        #expect(response.hasPrefix("HTTP/1.1 200 "), "\(response)")
        #expect(response.contains("\"bodyLength\":6"))
        await h.stop()
    }

    /// The reported flake: in one run of two, a chunked body with a 1 MiB chunk extension got no answer. Its cause:
    /// when the parser rejected the body after the head had started an exchange (the head came in an earlier read,
    /// which depends on timing), the error waited behind a body that would never end. `Expect: 100-continue` makes
    /// the split deterministic: proxyd answers 100 once the exchange started.
    @Test(arguments: [true, false])
    func test_issue_12_oversizedChunkExtensionIsRefusedAtOnce(http2: Bool) async throws {
        let h = try await Harness.start(standIn: { $0.enableHTTP2 = http2 }, proxyArguments: ["--loops=1"])
        for round in 1...3 {
            // An upstream connection is ready (HTTP/1.1 ones are dropped with a reset exchange), so the request
            // reaches the stand-in before its body fails.
            let warm = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"])
            #expect(warm.text == "200")
            let client = try RawClient(port: h.proxy.port)
            client.send("POST /standin/echo/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
            #expect(client.read(until: "\r\n\r\n").hasPrefix("HTTP/1.1 100 "))
            let fd = client.fd
            let sender = Thread {
                var extensionLine = Array("1;".utf8)
                extensionLine += [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
                _ = extensionLine.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
            sender.start()
            let (text, time) = readToEnd(client)
            #expect(text.hasPrefix("HTTP/1.1 400 "), "round \(round): \(text.prefix(200))")
            #expect(time < .seconds(5), "round \(round): \(time)")
            while !sender.isFinished { try await Task.sleep(for: .milliseconds(10)) }
            #expect(await pollUntil { h.standIn.stats.requestsAbandoned == round })
        }
        await h.stop()
    }

    @Test func maxConnectionsRefusesNewOnesAndKeepsTheOthers() async throws {
        let h = try await Harness.start(proxyArguments: ["--max-connections=2", "--loops=1"])
        let first = KeepAliveClient(port: h.proxy.port)
        let second = KeepAliveClient(port: h.proxy.port)
        #expect(first.get("/api")?.status == 200)
        #expect(second.get("/api")?.status == 200)
        let third = try RawClient(port: h.proxy.port)
        let (text, time) = readToEnd(third)  // answered without sending anything
        #expect(text.hasPrefix("HTTP/1.1 503 "), "\(text)")
        #expect(text.contains("--max-connections"))
        #expect(time < .seconds(3))
        // The two open connections are unaffected.
        #expect(first.get("/api/v1")?.status == 200)
        #expect(second.get("/api/v1")?.status == 200)
        // A slot freed is a slot taken.
        first.close()
        #expect(await pollUntil {
            let next = KeepAliveClient(port: h.proxy.port)
            defer { next.close() }
            return next.get("/api")?.status == 200
        })
        #expect(h.proxy.child.stderr.contains("(--max-connections)"))
        await h.stop()
    }

    /// With the open-file limit at 40 (soft = hard: nothing to raise), proxyd runs out of descriptors. Pending
    /// connections are refused at once (503, then closed), the open ones keep working, one line is logged for the
    /// burst, and accepting resumes when descriptors are free.
    @Test(.enabled(if: Tool.path("prlimit") != nil, "needs prlimit (util-linux)"))
    func outOfFileDescriptorsRefusesPromptlyAndKeepsServing() async throws {
        let h = try await Harness.start(
            proxyArguments: ["--loops=1", "--max-connections=1000", "--accept-uids=*", "-v2"],
            proxyWrapper: ["prlimit", "--nofile=40:40"])
        let busy = KeepAliveClient(port: h.proxy.port)
        #expect(busy.get("/api")?.status == 200)  // opens the pooled HTTP/2 connection while descriptors remain
        var open: [RawClient] = []
        var refused: [String] = []
        let started = ContinuousClock.now
        while refused.isEmpty && open.count < 60 {
            let client = try RawClient(port: h.proxy.port)
            var short = timeval(tv_sec: 0, tv_usec: 300_000)
            setsockopt(client.fd, SOL_SOCKET, SO_RCVTIMEO, &short, socklen_t(MemoryLayout<timeval>.size))
            let answer = client.readSome()
            if answer.isEmpty {
                open.append(client)
            } else {
                refused.append(String(decoding: answer, as: UTF8.self))
            }
        }
        let refusal = try #require(refused.first, "no connection was refused (\(open.count) open)")
        #expect(refusal.hasPrefix("HTTP/1.1 503 "), "\(refusal)")
        #expect(refusal.contains("out of file descriptors"))
        #expect(ContinuousClock.now - started < .seconds(30))
        // More connections while still out of descriptors: refused promptly too, none left waiting.
        for _ in 0..<3 {
            let client = try RawClient(port: h.proxy.port)
            let (text, time) = readToEnd(client)
            #expect(text.hasPrefix("HTTP/1.1 503 "))
            #expect(time < .seconds(3))
        }
        // The connection that was already open is served (over the pooled upstream connection).
        #expect(busy.get("/api/v1")?.status == 200)
        // One descriptor comes free: the next connection takes it and is served, the one after is refused, and
        // neither counts as the burst ending and starting again (no log line for each descriptor that frees).
        open.removeLast().close()
        var taker: KeepAliveClient?
        #expect(await pollUntil {
            let next = KeepAliveClient(port: h.proxy.port)
            if next.get("/api")?.status == 200 {
                taker = next
                return true
            }
            next.close()
            return false
        })
        let (afterOne, _) = readToEnd(try RawClient(port: h.proxy.port))
        #expect(afterOne.hasPrefix("HTTP/1.1 503 "))
        var log = h.proxy.child.stderr
        #expect(log.components(separatedBy: "out of file descriptors on").count - 1 == 1, "\(log)")
        #expect(!log.contains("accepting connections on"), "\(log)")
        // Descriptors free again: new connections are served; the burst was logged once, and its end.
        taker?.close()
        open.forEach { $0.close() }
        #expect(await pollUntil {
            let next = KeepAliveClient(port: h.proxy.port)
            defer { next.close() }
            return next.get("/api")?.status == 200 && h.proxy.child.stderr.contains("accepting connections on")
        })
        log = h.proxy.child.stderr
        #expect(log.components(separatedBy: "out of file descriptors on").count - 1 == 1, "\(log)")
        #expect(log.contains("accepting connections on"))
        #expect(log.contains("open-file limit 40"))
        busy.close()
        await h.stop()
    }
}

/// Polls `condition` every 50 ms for up to 10 s.
func pollUntil(timeout: Duration = .seconds(10), _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try condition()
}
