import Crypto
import Foundation
import StandInServer
import Testing

/// Issue 2 end to end: the built `proxyd` binary in front of the SwiftNIO stand-in apiserver, driven by curl,
/// kubectl and raw sockets. Serialized: each test starts its own processes, and the machine has two cores.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CoreDataPathTests {
    @Test func getAPIOverHTTP2WithBearerToken() async throws {
        let h = try await Harness.start()
        let r = try await Tool.curl(["-i", "\(h.url)/api/"])
        #expect(r.status == 0)
        #expect(r.text.hasPrefix("HTTP/1.1 200"))
        #expect(r.text.contains("\"kind\":\"APIVersions\""))
        // The stand-in saw HTTP/2 and our token, not the client's (absent) credentials.
        let echo = try jsonObject(try await Tool.curl(["\(h.url)/standin/echo/x?y=1"]).stdout)
        #expect(echo["protocol"] as? String == "h2")
        #expect(echo["authenticatedBy"] as? String == "token")
        #expect(echo["rawPath"] as? String == "/standin/echo/x?y=1" || echo["path"] as? String == "/standin/echo/x")
        await h.stop()
    }

    @Test(arguments: ["POST", "PUT", "DELETE", "PATCH"])
    func methodsWithBodies(method: String) async throws {
        let h = try await Harness.start()
        let body = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let file = h.directory.appendingPathComponent("body.bin")
        try body.write(to: file)
        let r = try await Tool.curl(["-X", method, "--data-binary", "@\(file.path)", "-H", "Content-Type: application/octet-stream", "\(h.url)/standin/echo/m"])
        let echo = try jsonObject(r.stdout)
        #expect(echo["method"] as? String == method)
        #expect(echo["bodyLength"] as? Int == body.count)
        #expect(echo["bodySHA256"] as? String == SHA256.hash(data: body).hexString)
        // Chunked upload from the client: same bytes arrive.
        let c = try await Tool.curl(["-X", method, "-H", "Transfer-Encoding: chunked", "--data-binary", "@\(file.path)", "\(h.url)/standin/echo/c"])
        let echoChunked = try jsonObject(c.stdout)
        #expect(echoChunked["bodySHA256"] as? String == SHA256.hash(data: body).hexString)
        await h.stop()
    }

    @Test func kubectlGetRawAndWatch() async throws {
        let h = try await Harness.start()
        let raw = try await Tool.run("kubectl", ["--server", h.url, "get", "--raw", "/api"])
        #expect(raw.status == 0, "\(raw.stderr)")
        #expect(raw.text.contains("APIVersions"))

        try h.standIn.createPod(name: "first")
        // kubectl get pods -w: the first line lists the existing pod; a pod created after that must show up.
        let watch = try ChildProcess(
            executable: URL(fileURLWithPath: Tool.path("kubectl")!),
            arguments: ["--server", h.url, "get", "pods", "-w", "-o", "name"],
            environment: ["HOME": h.directory.path])
        _ = try await watch.waitForStdout(containing: "pod/first")
        try h.standIn.createPod(name: "second")
        _ = try await watch.waitForStdout(containing: "pod/second")
        watch.terminate()
        await h.stop()
    }

    /// Streaming without timing: event 2 is created only after event 1 reached the client through proxyd.
    @Test func watchEventsStreamImmediately() async throws {
        let h = try await Harness.start()
        try h.standIn.createPod(name: "one")
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let first = client.read(until: "\"one\"")
        #expect(first.hasPrefix("HTTP/1.1 200"))
        #expect(first.lowercased().contains("transfer-encoding: chunked"))
        try h.standIn.createPod(name: "two")
        let second = client.read(until: "\"two\"")
        #expect(second.contains("\"two\""))
        await h.stop()
    }

    @Test func twoHundredParallelRequestsShareOneUpstreamConnection() async throws {
        let h = try await Harness.start(proxyArguments: ["--loops=1"])
        h.standIn.resetStats()
        let urls = (0..<200).flatMap { _ in ["\(h.url)/standin/slow?delayMs=300&chunks=1", "-o", "/dev/null"] }
        let r = try await Tool.curl(["--parallel", "--parallel-max", "200", "-w", "%{http_code}\n"] + urls, timeout: .seconds(60))
        let codes = r.text.split(separator: "\n")
        #expect(codes.count == 200)
        #expect(codes.allSatisfy { $0 == "200" })
        let stats = h.standIn.stats
        #expect(stats.tcpConnectionsAccepted == 1)
        #expect(stats.h2Connections == 1)
        await h.stop()
    }

    /// A real apiserver allows about 250 streams per HTTP/2 connection: more watches than that open more connections,
    /// and every watch still gets its events.
    @Test func watchesBeyondMaxConcurrentStreamsOpenMoreConnections() async throws {
        let h = try await Harness.start(standIn: { $0.maxConcurrentStreams = 4 }, proxyArguments: ["--loops=1"])
        h.standIn.resetStats()
        var clients: [RawClient] = []
        for _ in 0..<14 {
            let client = try RawClient(port: h.proxy.port)
            client.send("GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            clients.append(client)
        }
        var active = 0
        for _ in 0..<200 {
            active = h.standIn.stats.activeWatches
            if active == 14 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(active == 14)
        try h.standIn.createPod(name: "spread")
        for client in clients {
            #expect(client.read(until: "\"spread\"").contains("\"spread\""))
        }
        let stats = h.standIn.stats
        #expect(stats.h2Connections >= 4, "14 watches at 4 streams per connection need at least 4 connections")
        #expect(stats.h2Connections <= 4 + 8, "no more than the waiting streams need, 8 set-ups at a time at most")
        for client in clients { client.close() }
        await h.stop()
    }

    /// A client that closes its connection while its watch is idle ends the upstream watch at once, not when the
    /// next event fails to reach it (as kubectl proxy, through Go's server).
    @Test func closingAnIdleWatchEndsItUpstream() async throws {
        let h = try await Harness.start(proxyArguments: ["--loops=1"])
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(client.read(until: "\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        var active = 0
        for _ in 0..<100 where active != 1 {
            active = h.standIn.stats.activeWatches
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(active == 1)
        client.close()
        for _ in 0..<200 where active != 0 {
            active = h.standIn.stats.activeWatches
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(active == 0)
        // Half-closed: a watcher cannot be told from a gone client, so this one ends too (as with kubectl proxy);
        // other requests go on for a half-closed client (ClientLimitsTests).
        let halfClosed = try RawClient(port: h.proxy.port)
        halfClosed.send("GET /api/v1/namespaces/default/pods?watch=true HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(halfClosed.read(until: "\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        for _ in 0..<100 where active != 1 {
            active = h.standIn.stats.activeWatches
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(active == 1)
        halfClosed.shutdownWrite()
        for _ in 0..<200 where active != 0 {
            active = h.standIn.stats.activeWatches
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(active == 0)
        await h.stop()
    }

    @Test func upload100MiBIntact() async throws {
        let h = try await Harness.start()
        let file = h.directory.appendingPathComponent("big.bin")
        var hasher = SHA256()
        _ = FileManager.default.createFile(atPath: file.path, contents: nil)
        let handle = try FileHandle(forWritingTo: file)
        var block = [UInt8](repeating: 0, count: 1 << 20)
        for i in 0..<100 {
            for j in stride(from: 0, to: block.count, by: 4096) { block[j] = UInt8(truncatingIfNeeded: i &+ j) }
            hasher.update(data: block)
            try handle.write(contentsOf: block)
        }
        try handle.close()
        let r = try await Tool.curl(["-X", "PUT", "--data-binary", "@\(file.path)", "\(h.url)/standin/echo/upload"], timeout: .seconds(240))
        let echo = try jsonObject(r.stdout)
        #expect(echo["bodyLength"] as? Int == 100 << 20)
        #expect(echo["bodySHA256"] as? String == hasher.finalize().hexString)
        await h.stop()
    }

    @Test func slowClientKeepsMemoryBounded() async throws {
        let h = try await Harness.start(proxyArguments: ["--loops=1"])
        let baseline = h.proxy.child.rssKiB
        // 64 MiB list, read by a client that only takes ~4 MiB/s: the window is consumed only as the client
        // reads, so proxyd must not buffer the rest.
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /standin/large?bytes=\(64 << 20) HTTP/1.1\r\nHost: localhost\r\n\r\n")
        var received = 0
        var peak = baseline
        let deadline = ContinuousClock.now + .seconds(8)
        while ContinuousClock.now < deadline {
            let chunk = client.readSome(max: 64 * 1024)
            if chunk.isEmpty { break }
            received += chunk.count
            try await Task.sleep(for: .milliseconds(15))
            peak = max(peak, h.proxy.child.rssKiB)
        }
        #expect(received > 1 << 20, "the client should have received data")
        #expect(received < 60 << 20, "the client is slow on purpose")
        // Growth must stay far below what was sent by the apiserver's side (64 MiB).
        #expect(peak - baseline < 16 * 1024, "RSS grew from \(baseline) KiB to \(peak) KiB")
        await h.stop()
    }

    @Test func upstreamDownGives503StatusThenRecovers() async throws {
        let h = try await Harness.start()
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        try await h.standIn.stop()
        let down = try await Tool.curl(["-w", "\n%{http_code}", "\(h.url)/api"])
        let lines = down.text.split(separator: "\n")
        let code = lines.last.map(String.init)
        #expect(code == "503" || code == "502")
        let status = try jsonObject(Data(lines.dropLast().joined(separator: "\n").utf8))
        #expect(status["kind"] as? String == "Status")
        #expect((status["message"] as? String)?.contains("standin-token") == false)
        try await h.standIn.restart()
        var recovered = false
        for _ in 0..<50 {
            let r = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"])
            if r.text == "200" { recovered = true; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(recovered)
        #expect(h.proxy.child.process.isRunning)
        await h.stop()
    }

    @Test func streamResetBeforeHeadersGives502Status() async throws {
        let h = try await Harness.start()
        let r = try await Tool.curl(["-w", "\n%{http_code}", "\(h.url)/standin/reset?before=headers"])
        #expect(r.text.hasSuffix("\n502"))
        #expect(r.text.contains("\"kind\":\"Status\""))
        #expect(r.text.contains("reset the stream"))
        // The daemon keeps serving.
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        await h.stop()
    }

    @Test func streamResetMidBodyCutsTheClientConnection() async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /standin/reset HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let response = client.readToEnd()
        #expect(response.hasPrefix("HTTP/1.1 200"))
        // Chunked body left unterminated: the client can tell the response is truncated.
        #expect(!response.hasSuffix("0\r\n\r\n"))
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        await h.stop()
    }

    @Test func goAwayMovesNewRequestsToAFreshConnection() async throws {
        let h = try await Harness.start(proxyArguments: ["--loops=1"])
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        await h.standIn.sendGoAway()
        try await Task.sleep(for: .milliseconds(200))
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        #expect(h.standIn.stats.tcpConnectionsAccepted == 2)
        await h.stop()
    }

    @Test func clientDisconnectMidStreamLeaksNoDescriptors() async throws {
        let h = try await Harness.start(proxyArguments: ["--loops=1"])
        _ = try await Tool.curl(["-o", "/dev/null", "\(h.url)/api"])  // warm the upstream connection
        try await Task.sleep(for: .milliseconds(200))
        let before = h.proxy.child.openFDCount
        for _ in 0..<20 {
            let client = try RawClient(port: h.proxy.port)
            client.send("GET /standin/large?bytes=\(32 << 20) HTTP/1.1\r\nHost: localhost\r\n\r\n")
            _ = client.readSome()
            // client goes out of scope: closed mid-body
        }
        var after = h.proxy.child.openFDCount
        for _ in 0..<50 where after > before {
            try await Task.sleep(for: .milliseconds(100))
            after = h.proxy.child.openFDCount
        }
        #expect(after <= before, "fds before \(before), after \(after)")
        // The upstream connection is still healthy and shared.
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        #expect(h.standIn.stats.tcpConnectionsAccepted == 1)
        await h.stop()
    }

    @Test func ipv6LoopbackListener() async throws {
        let h = try await Harness.start(proxyArguments: ["--address=::1", "--port=0"])
        #expect(h.proxy.address.hasPrefix("[::1]:"))
        let r = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "http://\(h.proxy.address)/api"])
        #expect(r.text == "200")
        await h.stop()
    }

    @Test func filterRejectsExecWithKubectlsAnswer() async throws {
        let h = try await Harness.start()
        let r = try await Tool.curl(["-i", "\(h.url)/api/v1/namespaces/default/pods/p/exec?command=sh"])
        #expect(r.text.hasPrefix("HTTP/1.1 403"))
        #expect(r.text.contains("Content-Type: text/plain; charset=utf-8"))
        #expect(r.text.contains("X-Content-Type-Options: nosniff"))
        #expect(r.text.hasSuffix("\r\n\r\nForbidden\n"))
        let evil = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: evil.example", "\(h.url)/api"])
        #expect(evil.text == "403")
        await h.stop()
    }

    @Test func malformedRequestsGet4xxAndClose() async throws {
        let h = try await Harness.start()
        let cases: [(String, String)] = [
            ("POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
            ("GET /api HTTP/1.1\r\nHost: localhost\r\n folded: x\r\n\r\n", "400"),
            ("GET /\(String(repeating: "a", count: 20_000)) HTTP/1.1\r\nHost: localhost\r\n\r\n", "414"),
            ("GET /api HTTP/1.1\r\nHost: localhost\r\n" + (0..<120).map { "X-H\($0): v\r\n" }.joined() + "\r\n", "431"),
            ("GET /api HTTP/1.1\r\n\r\n", "400"),
        ]
        for (request, status) in cases {
            let client = try RawClient(port: h.proxy.port)
            client.send(request)
            let response = client.readToEnd()  // the proxy must close after the error
            #expect(response.hasPrefix("HTTP/1.1 \(status)"), "for \(request.prefix(60)): \(response.prefix(80))")
        }
        // Still serving.
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        await h.stop()
    }

    @Test func keepAlivePipeliningAnswersInOrder() async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port)
        client.send(
            "GET /standin/echo/1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                + "GET /standin/slow?delayMs=100&chunks=2 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                + "HEAD /api HTTP/1.1\r\nHost: localhost\r\n\r\n"
                + "GET /standin/echo/4 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        let all = client.readToEnd()
        // Bodies are not newline-terminated, so count status lines by their prefix anywhere.
        let statusLines = all.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statusLines == ["200", "200", "405", "200"])  // the stand-in has no HEAD for /api
        let first = all.range(of: "/standin/echo/1")!.lowerBound
        let last = all.range(of: "/standin/echo/4")!.lowerBound
        #expect(first < last)
        await h.stop()
    }

    @Test func http10ClientGetsCloseDelimitedOrLengthBody() async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /api HTTP/1.0\r\nHost: localhost\r\n\r\n")
        let response = client.readToEnd()
        #expect(response.hasPrefix("HTTP/1.1 200"))
        #expect(!response.lowercased().contains("transfer-encoding"))
        #expect(response.contains("APIVersions"))
        await h.stop()
    }

    /// A response that ends the connection (HTTP/1.0, close-delimited) reaches a slow client completely.
    @Test func closingConnectionDeliversEverythingToASlowClient() async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port, receiveBuffer: 16 * 1024)
        client.send("GET /standin/large?bytes=\(2 << 20) HTTP/1.0\r\nHost: localhost\r\n\r\n")
        var received: [UInt8] = []
        while true {
            let chunk = client.readSome(max: 32 * 1024)
            if chunk.isEmpty { break }
            received += chunk
            try await Task.sleep(for: .milliseconds(150))
        }
        let text = String(decoding: received, as: UTF8.self)
        let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        #expect(text.hasPrefix("HTTP/1.1 200"))
        #expect(body.utf8.count == 2 << 20)
        await h.stop()
    }

    @Test func expectContinueUpload() async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port)
        client.send("POST /standin/echo/e HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        let interim = client.read(until: "\r\n\r\n")
        #expect(interim.hasPrefix("HTTP/1.1 100"))
        client.send("hello")
        let final = client.read(until: "}")
        #expect(final.contains("\"bodyLength\":5"))
        await h.stop()
    }
}

@Suite(.serialized)
struct StartupErrorTests {
    @Test func brokenKubeconfigExitsWithFileAndField() async throws {
        let dir = try TempDirectory.make()
        let path = dir.appendingPathComponent("config").path
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - name: c
              cluster:
                server: https://127.0.0.1:1
            users:
            - name: alice
              user:
                client-certificate-data: bm90IGEgY2VydA==
                client-key-data: "!!!not-base64!!!"
            contexts:
            - name: x
              context: {cluster: c, user: alice}
            current-context: x
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let child = try ChildProcess(executable: BuildProducts.proxyd, arguments: ["--kubeconfig", path, "--port=0"])
        let status = try await child.waitForExit()
        #expect(status == 1)
        #expect(child.stderr.contains(path))
        #expect(child.stderr.contains("users[alice].user.client-key-data"))
        #expect(!child.stderr.contains("!!!not-base64!!!"))
    }

    @Test func missingKubeconfigExits1() async throws {
        let child = try ChildProcess(executable: BuildProducts.proxyd, arguments: ["--kubeconfig", "/nonexistent/kubeconfig"])
        #expect(try await child.waitForExit() == 1)
        #expect(child.stderr.contains("/nonexistent/kubeconfig"))
    }

    @Test func portInUseExits1WithGoStyleMessage() async throws {
        let h = try await Harness.start()
        let child = try ChildProcess(
            executable: BuildProducts.proxyd,
            arguments: ["--kubeconfig", h.directory.appendingPathComponent("kubeconfig").path, "--port=\(h.proxy.port)"])
        #expect(try await child.waitForExit() == 1)
        #expect(child.stderr.contains("error: listen tcp 127.0.0.1:\(h.proxy.port): bind: address already in use"))
        await h.stop()
    }
}

extension Digest {
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}
