import Foundation
import StandInServer
import Testing

/// Several apiservers together with operations (docs/failover.md, "Readiness, metrics and reloads"): a reload
/// rebuilds the server set, per-server metrics match the traffic each stand-in saw, and `/readyz` stays ready while
/// one of two servers is dead.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct FailoverOperationsTests {
    static let listPath = FailoverTests.listPath
    static let slicesPath = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"

    static func metrics(_ proxy: RunningProxy) async throws -> [String: Any] {
        try await MetricsTests.scrape(try #require(proxy.adminURL(serving: "metrics")))
    }

    static func metric(_ samples: [String: Any], _ name: String, server: String, _ more: String = "") -> Double {
        MetricsTests.value(samples, "\(name){\(more)server=\(server)}") ?? -1
    }

    static func activeWatches(_ standIns: [StandIn]) -> [Int] { standIns.map(\.stats.activeWatches) }

    // MARK: reload

    /// The SIGHUP token rotation with two stand-ins and discovery on: after the reload both servers get the new
    /// token, the watch opened before keeps streaming on its old connection, discovery lists again with the new
    /// credentials, and the old configuration's discovery watch is gone.
    @Test func sighupRotatesTheTokenAcrossTheServerSet() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir) { _, configuration in
            configuration.tokens = ["token-1"]
        }
        for standIn in standIns {
            try standIn.setAPIServerEndpointSlice(name: "kubernetes", addresses: ["127.0.0.1"], port: standIns[1].port)
        }
        let kubeconfig = try writeKubeconfig(in: dir, server: standIns[0].url, user: "{token: token-1}")
        let proxy = try await RunningProxy.start(arguments: [
            "--kubeconfig", kubeconfig, "--port=0", "--loops=2", "--failover-server", standIns[1].url,
            "--discover-apiservers", "--watch-kubeconfig=false", "--metrics-bind-address=127.0.0.1:0", "-v=3",
        ])
        // Discovery's watch, on one of the servers.
        try await FailoverTests.eventually("discovery watches the slices") {
            Self.activeWatches(standIns).reduce(0, +) == 1
        }
        for _ in 0..<6 { #expect(try await FailoverTests.get(proxy).code == "200") }
        #expect(FailoverTests.requests(standIns[0]) > 0 && FailoverTests.requests(standIns[1]) > 0)

        // A client's watch; the stand-ins keep separate stores, so the pod goes to both.
        for standIn in standIns { try standIn.createPod(name: "before") }
        let watch = try RawClient(port: proxy.port)
        watch.send("GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(watch.read(until: "\"before\"").hasPrefix("HTTP/1.1 200"))
        try await FailoverTests.eventually("the client's watch is counted") {
            Self.activeWatches(standIns).reduce(0, +) == 2
        }

        for standIn in standIns { standIn.setTokens(["token-2"]) }
        _ = try writeKubeconfig(in: dir, server: standIns[0].url, user: "{token: token-2}")
        #expect(try await FailoverTests.get(proxy).code == "401")  // not reloaded yet
        let listsBefore = standIns.map { FailoverTests.requests($0) }
        func slices() -> Int { standIns.map { $0.stats.requestsByPath[Self.slicesPath] ?? 0 }.reduce(0, +) }
        let slicesBefore = slices()
        kill(proxy.child.pid, SIGHUP)
        try await FailoverTests.eventually("the reload applies") {
            try await FailoverTests.get(proxy).code == "200"
        }
        #expect(proxy.child.stderr.contains("SIGHUP: configuration reloaded"))
        // Both servers of the new set take requests, with the new token (the stand-ins accept no other).
        for _ in 0..<8 { #expect(try await FailoverTests.get(proxy).code == "200") }
        for (index, standIn) in standIns.enumerated() {
            #expect(FailoverTests.requests(standIn) > listsBefore[index], "server \(index) got no request")
        }
        // Discovery started over with the new credentials, and only its new watch is left (the client's too).
        try await FailoverTests.eventually("discovery lists again") {
            slices() >= slicesBefore + 2  // the list, then the watch
        }
        try await FailoverTests.eventually("the old discovery watch is gone") {
            Self.activeWatches(standIns).reduce(0, +) == 2
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(Self.activeWatches(standIns).reduce(0, +) == 2)

        // The client's watch from before the reload still streams, on its old connection.
        for standIn in standIns { try standIn.createPod(name: "after") }
        #expect(watch.read(until: "\"after\"").contains("\"after\""))
        let samples = try await Self.metrics(proxy)
        #expect(MetricsTests.value(samples, "proxyd_config_reloads_total{result=success}") == 1)
        #expect(MetricsTests.value(samples, "proxyd_upstream_connections{protocol=h2,state=draining}") == 1)
        for standIn in standIns {
            #expect(Self.metric(samples, "proxyd_apiserver_healthy", server: standIn.url) == 1)
        }
        #expect(!proxy.child.stderr.contains("token-1") && !proxy.child.stderr.contains("token-2"))

        // Once the watch ends, the old connection closes.
        watch.close()
        var draining: Double? = 1
        for i in 0..<50 where draining != 0 {
            if i < 5 { for standIn in standIns { try standIn.createPod(name: "gone-\(i)") } }
            try await Task.sleep(for: .milliseconds(100))
            draining = MetricsTests.value(
                try await Self.metrics(proxy), "proxyd_upstream_connections{protocol=h2,state=draining}")
        }
        #expect(draining == 0)
        await proxy.stop()
        for standIn in standIns { try? await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: metrics

    /// `proxyd_apiserver_*` against what each stand-in counted: requests while both answer, then with one stopped
    /// (its attempts fail and go to the other), its connection errors and health.
    @Test func perServerMetricsMatchWhatEachServerSaw() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir)
        let proxy = try await FailoverTests.startProxy(
            dir: dir, primary: standIns[0].url, failover: [standIns[1].url], extra: ["--metrics-bind-address=127.0.0.1:0"])
        let (a, b) = (standIns[0].url, standIns[1].url)
        for _ in 0..<10 { #expect(try await FailoverTests.get(proxy).code == "200") }
        var samples = try await Self.metrics(proxy)
        #expect(samples["TYPE proxyd_apiserver_requests"] as? String == "counter")
        #expect(Self.metric(samples, "proxyd_apiserver_requests_total", server: a) == Double(FailoverTests.requests(standIns[0])))
        #expect(Self.metric(samples, "proxyd_apiserver_requests_total", server: b) == Double(FailoverTests.requests(standIns[1])))
        #expect(FailoverTests.requests(standIns[0]) + FailoverTests.requests(standIns[1]) == 10)
        #expect(FailoverTests.requests(standIns[0]) > 0 && FailoverTests.requests(standIns[1]) > 0)
        for server in [a, b] {
            #expect(Self.metric(samples, "proxyd_apiserver_request_failures_total", server: server) == 0)
            #expect(Self.metric(samples, "proxyd_apiserver_healthy", server: server) == 1)
            #expect(Self.metric(samples, "proxyd_apiserver_connection_errors_total", server: server, "kind=connect,") == 0)
        }

        try await standIns[1].stop()
        for _ in 0..<6 { #expect(try await FailoverTests.get(proxy).code == "200") }
        samples = try await Self.metrics(proxy)
        let answeredByA = FailoverTests.requests(standIns[0])
        let answeredByB = FailoverTests.requests(standIns[1])
        #expect(answeredByA + answeredByB == 16)
        #expect(Self.metric(samples, "proxyd_apiserver_requests_total", server: a) == Double(answeredByA))
        #expect(Self.metric(samples, "proxyd_apiserver_request_failures_total", server: a) == 0)
        // B's attempts after the stop were refused and resent to A: sent minus failed is what B answered.
        let sentToB = Self.metric(samples, "proxyd_apiserver_requests_total", server: b)
        let failedAtB = Self.metric(samples, "proxyd_apiserver_request_failures_total", server: b)
        #expect(failedAtB >= 1)
        #expect(sentToB - failedAtB == Double(answeredByB))
        #expect(Self.metric(samples, "proxyd_apiserver_connection_errors_total", server: b, "kind=connect,") >= 1)
        #expect(Self.metric(samples, "proxyd_apiserver_connection_errors_total", server: a, "kind=connect,") == 0)
        #expect(Self.metric(samples, "proxyd_apiserver_healthy", server: a) == 1)
        #expect(Self.metric(samples, "proxyd_apiserver_healthy", server: b) == 0)
        // The per-server errors are in the total too.
        #expect(MetricsTests.value(samples, "proxyd_upstream_connection_errors_total{kind=connect}")! >= 1)

        await proxy.stop()
        try? await standIns[0].stop()
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: readiness

    /// One of two servers dead: still ready, `?verbose` says which; both dead: 503 within the bound; one back:
    /// ready again. No probe sends a request to a server.
    @Test func readyzWithOneOfTwoServersDead() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir)
        let proxy = try await FailoverTests.startProxy(
            dir: dir, primary: standIns[0].url, failover: [standIns[1].url], extra: ["--healthz-bind-address=127.0.0.1:0"])
        let health = try #require(proxy.adminURL(serving: "health"))
        let bound = ReadinessTests.bound + .seconds(3)
        let (a, b) = ("127.0.0.1:\(standIns[0].port)", "127.0.0.1:\(standIns[1].port)")

        #expect(try await ReadinessTests.waitFor("200", health, within: .seconds(10)) != nil)
        #expect(try await ReadinessTests.readyz(health, verbose: true).body == """
            [+]loops ok
            [+]upstream ok
            [+]upstream:\(a) ok
            [+]upstream:\(b) ok
            [+]credentials ok
            [+]shutdown ok
            readyz check passed

            """)

        try await standIns[1].stop()
        try await FailoverTests.eventually("the dead server is reported", timeout: bound) {
            try await ReadinessTests.readyz(health, verbose: true).body.contains("[-]upstream:\(b) failed: ")
        }
        let oneDead = try await ReadinessTests.readyz(health, verbose: true)
        #expect(oneDead.code == "200")
        #expect(oneDead.body.contains("[+]upstream ok\n[+]upstream:\(a) ok\n"), "\(oneDead.body)")
        #expect(oneDead.body.hasSuffix("readyz check passed\n"))
        let single = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(health)/readyz/upstream:\(b)"])
        #expect(single.text == "503")

        try await standIns[0].stop()
        #expect(try await ReadinessTests.waitFor("503", health, within: bound) != nil)
        let down = try await ReadinessTests.readyz(health)
        #expect(down.body.hasPrefix("upstream failed: no apiserver is reachable (https://\(a): "), "\(down.body)")

        try await standIns[0].restart()
        #expect(try await ReadinessTests.waitFor("200", health, within: bound) != nil)
        // Probes are connections and PINGs, never requests.
        for standIn in standIns { #expect(standIn.stats.requestsByPath.isEmpty, "\(standIn.stats.requestsByPath)") }

        await proxy.stop()
        try? await standIns[0].stop()
        try? FileManager.default.removeItem(at: dir)
    }
}
