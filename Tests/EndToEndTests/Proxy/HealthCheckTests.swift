import Foundation
import StandInServer
import Testing

/// The upstream HTTP/2 health check (client-go's `HTTP2_READ_IDLE_TIMEOUT_SECONDS` / `HTTP2_PING_TIMEOUT_SECONDS`):
/// a connection whose apiserver went silent is dropped after an unanswered PING, and the next request reconnects.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct HealthCheckTests {
    @Test func silentApiserverIsDetectedByPingAndReplaced() async throws {
        let standIn = try await StandIn.start(StandInConfiguration())
        let relay = try PausableRelay(targetPort: standIn.port)
        let dir = try TempDirectory.make()
        try standIn.writeState(to: dir.path)
        let kubeconfig = try writeKubeconfig(
            in: dir, server: "https://127.0.0.1:\(relay.port)", user: "{token: standin-token}")
        let proxy = try await RunningProxy.start(
            arguments: ["--kubeconfig", kubeconfig, "--port=0", "--loops=1"],
            environment: ["HTTP2_READ_IDLE_TIMEOUT_SECONDS": "1", "HTTP2_PING_TIMEOUT_SECONDS": "1"])
        let api = ["-o", "/dev/null", "-w", "%{http_code}", "\(proxy.baseURL)/api"]

        #expect(try await Tool.curl(api).text == "200")
        // Idle but healthy: PINGs are answered, the connection stays.
        try await Task.sleep(for: .seconds(3))
        #expect(try await Tool.curl(api).text == "200")
        #expect(relay.accepted == 1)

        // A watch rides the connection; then the apiserver goes silent.
        try standIn.createPod(name: "p1")
        let watch = try RawClient(port: proxy.port)
        watch.send("GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(watch.read(until: "\"p1\"").hasPrefix("HTTP/1.1 200"))
        relay.setPaused(true)
        let started = ContinuousClock.now
        _ = watch.readToEnd()  // the cut reaches the client once the PING went unanswered
        let waited = ContinuousClock.now - started
        #expect(waited < .seconds(8), "waited \(waited)")
        // The log line is written as the connection drops; give the pipe reader a moment.
        var logged = false
        for _ in 0..<50 where !logged {
            logged = proxy.child.stderr.contains("did not answer a PING")
            if !logged { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(logged, "\(proxy.child.stderr)")

        // The apiserver is reachable again: the next request opens a new connection.
        relay.setPaused(false)
        #expect(try await Tool.curl(api).text == "200")
        #expect(relay.accepted == 2)

        await proxy.stop()
        relay.stop()
        try? await standIn.stop()
        try? FileManager.default.removeItem(at: dir)
    }

    @Test func disableHTTP2UsesHTTP1() async throws {
        let standIn = try await StandIn.start(StandInConfiguration())
        let dir = try TempDirectory.make()
        try standIn.writeState(to: dir.path)
        let proxy = try await RunningProxy.start(
            arguments: ["--kubeconfig", dir.appendingPathComponent("kubeconfig").path, "--port=0", "--loops=1"],
            environment: ["DISABLE_HTTP2": "1"])
        let e = try jsonObject(try await Tool.curl(["\(proxy.baseURL)/standin/echo/x"]).stdout)
        #expect(e["protocol"] as? String == "http/1.1")
        #expect(standIn.stats.h2Connections == 0)
        #expect(standIn.stats.h1Connections == 1)
        await proxy.stop()
        try? await standIn.stop()
        try? FileManager.default.removeItem(at: dir)
    }
}
