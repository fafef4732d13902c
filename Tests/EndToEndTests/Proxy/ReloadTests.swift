import Foundation
import StandInServer
import Testing

/// Reloads: a token rotated in the kubeconfig reaches the apiserver after SIGHUP and after an edit of the file,
/// while a watch opened before keeps streaming on its old connection (which closes once the watch ends); a
/// broken edit leaves the old configuration serving.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ReloadTests {
    static func start(_ extra: [String]) async throws -> Harness {
        try await Harness.start(
            standIn: { $0.tokens = ["token-1"] },
            proxyArguments: ["--loops=1", "--metrics-bind-address=127.0.0.1:0", "-v=3"] + extra,
            kubeconfig: { standIn, dir in try writeKubeconfig(in: dir, server: standIn.url, user: "{token: token-1}") })
    }

    static func rotate(_ h: Harness, to token: String) throws {
        h.standIn.setTokens([token])
        // writeKubeconfig writes a temporary file and renames it over the old one, as editors do.
        _ = try writeKubeconfig(in: h.directory, server: h.standIn.url, user: "{token: \(token)}")
    }

    static func code(_ h: Harness, _ path: String = "/api") async throws -> String {
        try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)\(path)"]).text
    }

    /// Polls until `path` answers 200 (a reload is asynchronous); returns the last code.
    static func waitFor200(_ h: Harness, within limit: Duration = .seconds(10)) async throws -> String {
        let start = ContinuousClock.now
        var last = ""
        while ContinuousClock.now - start < limit {
            last = try await code(h)
            if last == "200" { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        return last
    }

    static func openWatch(_ h: Harness) throws -> RawClient {
        try h.standIn.createPod(name: "before")
        let watch = try RawClient(port: h.proxy.port)
        watch.send("GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(watch.read(until: "\"before\"").hasPrefix("HTTP/1.1 200"))
        return watch
    }

    static func metric(_ h: Harness, _ key: String) async throws -> Double? {
        MetricsTests.value(try await MetricsTests.scrape(try #require(h.proxy.adminURL(serving: "metrics"))), key)
    }

    @Test func sighupRotatesTheTokenWhileAWatchKeepsStreaming() async throws {
        let h = try await Self.start(["--watch-kubeconfig=false"])
        #expect(try await Self.code(h) == "200")
        let watch = try Self.openWatch(h)
        #expect(h.standIn.stats.h2Connections == 1)

        try Self.rotate(h, to: "token-2")
        try await Task.sleep(for: .milliseconds(800))
        #expect(try await Self.code(h) == "401")  // no file watching: nothing changed yet
        kill(h.proxy.child.pid, SIGHUP)
        #expect(try await Self.waitFor200(h) == "200")
        let echo = try jsonObject(try await Tool.curl(["\(h.url)/standin/echo/after"]).stdout)
        #expect((echo["headers"] as? [String: [String]])?["authorization"] == ["Bearer token-2"])
        #expect(h.proxy.child.stderr.contains("SIGHUP: configuration reloaded"))

        // The watch opened with the old configuration still streams, on the old connection.
        try h.standIn.createPod(name: "after")
        #expect(watch.read(until: "\"after\"").contains("\"after\""))
        #expect(h.standIn.stats.h2Connections == 2)
        #expect(try await Self.metric(h, "proxyd_upstream_connections{protocol=h2,state=draining}") == 1)
        #expect(try await Self.metric(h, "proxyd_config_reloads_total{result=success}") == 1)

        // Once the watch ends, the old connection closes; the new one stays. (proxyd sees the client gone when a
        // write fails: the second event after the close, the first only draws the client's reset.)
        watch.close()
        var draining: Double? = 1
        for i in 0..<50 where draining != 0 {
            if i < 5 { try h.standIn.createPod(name: "gone-\(i)") }
            try await Task.sleep(for: .milliseconds(100))
            draining = try await Self.metric(h, "proxyd_upstream_connections{protocol=h2,state=draining}")
        }
        #expect(draining == 0)
        var open = 2
        for _ in 0..<50 where open != 1 {
            try await Task.sleep(for: .milliseconds(100))
            open = h.standIn.stats.activeConnections
        }
        #expect(open == 1)
        #expect(!h.proxy.child.stderr.contains("token-1") && !h.proxy.child.stderr.contains("token-2"))
        await h.stop()
    }

    @Test func anEditOfTheKubeconfigIsPickedUpWithoutASignal() async throws {
        let h = try await Self.start([])
        #expect(try await Self.code(h) == "200")
        let watch = try Self.openWatch(h)
        try Self.rotate(h, to: "token-2")
        #expect(try await Self.waitFor200(h) == "200")
        #expect(h.proxy.child.stderr.contains("kubeconfig changed: configuration reloaded"))
        try h.standIn.createPod(name: "after")
        #expect(watch.read(until: "\"after\"").contains("\"after\""))

        // Rewritten in place (truncate, then write), as `kubectl config` does.
        h.standIn.setTokens(["token-3"])
        let path = h.directory.appendingPathComponent("kubeconfig-custom").path
        let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "token-2", with: "token-3")
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(text.utf8))
        try handle.close()
        #expect(try await Self.waitFor200(h) == "200")
        watch.close()
        await h.stop()
    }

    @Test func aBrokenEditLeavesTheOldConfigurationServing() async throws {
        let h = try await Self.start(["--healthz-bind-address=127.0.0.1:0"])
        let health = try #require(h.proxy.adminURL(serving: "health"))
        #expect(try await Self.code(h) == "200")
        let path = h.directory.appendingPathComponent("kubeconfig-custom").path
        let good = try String(contentsOfFile: path, encoding: .utf8)
        try (good + "users: [oops\n").write(toFile: path, atomically: true, encoding: .utf8)
        var logged = false
        for _ in 0..<100 where !logged {
            try await Task.sleep(for: .milliseconds(100))
            logged = h.proxy.child.stderr.contains("the previous configuration stays in force")
        }
        #expect(logged)
        let log = h.proxy.child.stderr
        #expect(log.contains("kubeconfig changed: cannot reload the configuration: kubeconfig \(path): line "), "\(log)")
        #expect(try await Self.code(h) == "200")  // the old token still works
        #expect(try await ReadinessTests.readyz(health).code == "200")
        #expect(try await Self.metric(h, "proxyd_config_reloads_total{result=failure}") == 1)
        #expect(try await Self.metric(h, "proxyd_config_last_reload_successful{}") == 0)

        // A configuration that parses but names what does not exist is refused the same way, with the field.
        try good.replacingOccurrences(of: "current-context: x", with: "current-context: nope")
            .write(toFile: path, atomically: true, encoding: .utf8)
        logged = false
        for _ in 0..<100 where !logged {
            try await Task.sleep(for: .milliseconds(100))
            logged = h.proxy.child.stderr.contains("current-context: context \"nope\" not found")
        }
        #expect(logged, "\(h.proxy.child.stderr)")
        #expect(try await Self.code(h) == "200")

        // Fixed: the next edit applies.
        try Self.rotate(h, to: "token-2")
        #expect(try await Self.waitFor200(h) == "200")
        #expect(try await Self.metric(h, "proxyd_config_last_reload_successful{}") == 1)
        await h.stop()
    }
}
