import Foundation
import StandInServer
import Testing

/// `/readyz` follows the apiserver without sending it requests: the stand-in runs as its own process, is killed
/// by PID and started again on the same port.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ReadinessTests {
    /// The documented bound (docs/metrics.md, `HealthPolicy.upstreamStaleAfter`): 503 at most 15 s after the
    /// apiserver stops answering. The test allows 3 s more for a loaded CI machine.
    static let bound: Duration = .seconds(15)

    /// A stand-in apiserver process on `port` (0: any); returns it and its port.
    static func startStandIn(port: Int, state: URL) async throws -> (ChildProcess, Int) {
        let child = try ChildProcess(
            executable: BuildProducts.standInServer, arguments: ["--port", String(port), "--state-dir", state.path])
        let out = try await child.waitForStdout(containing: "serving on https://")
        let url = out.split(separator: "\n").first { $0.contains("serving on https://") } ?? ""
        return (child, Int(url.split(separator: ":").last ?? "") ?? 0)
    }

    static func readyz(_ health: String, verbose: Bool = false) async throws -> (code: String, body: String) {
        let r = try await Tool.curl(["-w", "\n%{http_code}", "\(health)/readyz\(verbose ? "?verbose" : "")"])
        let text = r.text
        let split = text.lastIndex(of: "\n") ?? text.endIndex
        return (String(text[text.index(after: split)...]), String(text[..<split]))
    }

    /// Polls `/readyz` every 100 ms until it answers `code`; returns how long that took, nil if it never did.
    static func waitFor(_ code: String, _ health: String, within limit: Duration) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if try await readyz(health).code == code { return ContinuousClock.now - start }
            try await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    @Test func readyzFollowsTheApiserverGoingAwayAndComingBack() async throws {
        let dir = try TempDirectory.make()
        var (standIn, port) = try await Self.startStandIn(port: 0, state: dir.appendingPathComponent("a"))
        // The restarted stand-in makes a new CA: this test is about reachability, so it does not check one.
        let kubeconfig = try writeKubeconfig(
            in: dir, server: "https://127.0.0.1:\(port)", user: "{token: standin-token}")
        try String(contentsOfFile: kubeconfig, encoding: .utf8)
            .replacingOccurrences(of: "certificate-authority: ca.crt", with: "insecure-skip-tls-verify: true")
            .write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        let proxy = try await RunningProxy.start(
            arguments: ["--kubeconfig", kubeconfig, "--port=0", "--loops=1", "--healthz-bind-address=127.0.0.1:0"])
        let health = try #require(proxy.adminURL)

        // Ready without any client request: the monitor's connection is the sign of life.
        #expect(try await Self.waitFor("200", health, within: .seconds(10)) != nil)
        #expect(try await Self.readyz(health, verbose: true).body == """
            [+]loops ok
            [+]upstream ok
            [+]credentials ok
            [+]shutdown ok
            readyz check passed

            """)
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(health)/livez"]).text == "200")

        // Idle for longer than the bound: PINGs keep it ready (no request goes upstream for a probe).
        try await Task.sleep(for: .seconds(6))
        #expect(try await Self.readyz(health).code == "200")

        standIn.kill9()
        _ = try await standIn.waitForExit()
        let wentDown = try await Self.waitFor("503", health, within: Self.bound + .seconds(3))
        #expect(wentDown != nil, "/readyz still 200 after the apiserver went away")
        let down = try await Self.readyz(health)
        #expect(down.body.hasPrefix("upstream failed: "), "\(down.body)")
        // Liveness is about proxyd, not the apiserver.
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(health)/livez"]).text == "200")

        (standIn, port) = try await Self.startStandIn(port: port, state: dir.appendingPathComponent("b"))
        let cameBack = try await Self.waitFor("200", health, within: Self.bound + .seconds(3))
        #expect(cameBack != nil, "/readyz did not return to 200")
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(proxy.baseURL)/api"]).text == "200")
        // No probe request ever reached the apiserver: only the one request above did.
        let stats = try jsonObject(try await Tool.curl(["\(proxy.baseURL)/standin/stats"]).stdout)
        let byPath = stats["requestsByPath"] as? [String: Int] ?? [:]
        #expect(byPath.keys.sorted() == ["/api", "/standin/stats"], "\(byPath)")

        await proxy.stop()
        standIn.terminate()
        _ = try? await standIn.waitForExit()
        try? FileManager.default.removeItem(at: dir)
    }

    /// During a graceful stop `/readyz` says so (so a Service stops sending traffic) while requests drain.
    @Test func readyzFailsWhileShuttingDown() async throws {
        let h = try await Harness.start(proxyArguments: ["--healthz-bind-address=127.0.0.1:0"])
        let health = try #require(h.proxy.adminURL)
        #expect(try await Self.waitFor("200", health, within: .seconds(10)) != nil)
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /standin/slow?delayMs=1000&chunks=3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        _ = client.read(until: "chunk 1/3")
        h.proxy.child.terminate()
        #expect(try await Self.waitFor("503", health, within: .seconds(2)) != nil)
        #expect(try await Self.readyz(health, verbose: true).body.contains("[-]shutdown failed: proxyd is shutting down"))
        _ = client.read(until: "0\r\n\r\n")
        #expect(try await h.proxy.child.waitForExit() == 0)
        try? await h.standIn.stop()
    }
}
