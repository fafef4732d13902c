import Foundation
import StandInServer
import Testing

/// Several apiservers (docs/failover.md): stand-ins sharing one CA, proxyd balancing over them, servers dying,
/// coming back, refusing, being discovered. One server's behaviour is covered by every other suite.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct FailoverTests {
    static let listPath = "/api/v1/namespaces/default/configmaps"

    /// Polls `condition` every 50 ms until it holds or `timeout` passes.
    static func eventually(
        _ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ChildError("timed out waiting until \(what)")
    }

    static func startProxy(dir: URL, primary: String, failover: [String], extra: [String] = []) async throws -> RunningProxy {
        let kubeconfig = try writeClusterKubeconfig(in: dir, server: primary)
        var args = ["--kubeconfig", kubeconfig, "--port=0", "--loops=2", "--apiserver-retry-max=1s"]
        for url in failover { args += ["--failover-server", url] }
        return try await RunningProxy.start(arguments: args + extra)
    }

    static func get(_ proxy: RunningProxy, _ path: String = listPath) async throws -> (code: String, body: String) {
        let r = try await Tool.curl(["-s", "-o", "-", "-w", "\n%{http_code}", proxy.baseURL + path])
        let text = r.text
        guard let newline = text.lastIndex(of: "\n") else { return ("", text) }
        return (String(text[text.index(after: newline)...]), String(text[..<newline]))
    }

    static func requests(_ standIn: StandIn, _ path: String = listPath) -> Int {
        standIn.stats.requestsByPath[path] ?? 0
    }

    /// A watch through proxyd, read by curl (a real client) until the stream ends.
    static func startWatch(_ proxy: RunningProxy) throws -> ChildProcess {
        guard let curl = Tool.path("curl") else { throw ChildError("curl is not installed") }
        return try ChildProcess(
            executable: URL(fileURLWithPath: curl),
            arguments: ["-sN", "--noproxy", "*", proxy.baseURL + listPath + "?watch=1"])
    }

    // MARK: SIGKILL under load

    /// Two servers (the primary dies) and three (a failover server dies), c=64: requests started after the kill
    /// all succeed; watches on the dead server end, the others stay; a new watch goes to a survivor; the dead
    /// server rejoins once restarted.
    @Test(arguments: [2, 3])
    func sigkillUnderLoadFailsNothingThatWasNotInFlight(servers: Int) async throws {
        let dir = try TempDirectory.make()
        var standIns: [StandInProcess] = []
        for _ in 0..<servers { standIns.append(try await StandInProcess.start(caDirectory: dir)) }
        let proxy = try await Self.startProxy(
            dir: dir, primary: standIns[0].url, failover: standIns.dropFirst().map(\.url))
        // Something for the watches to report: two configmaps on every server.
        for standIn in standIns {
            for name in ["a", "b"] {
                let r = try await Tool.curl([
                    "--cacert", dir.appendingPathComponent("ca.crt").path, "-H", "Authorization: Bearer standin-token",
                    "-H", "Content-Type: application/json", "--data", #"{"metadata":{"name":"\#(name)"}}"#,
                    "-o", "/dev/null", "-w", "%{http_code}", standIn.url + Self.listPath,
                ])
                #expect(r.text == "201")
            }
        }
        var watches: [ChildProcess] = []
        defer {
            for watch in watches { watch.terminate() }
        }
        // Two watches per server: least open streams spreads them evenly.
        for _ in 0..<(2 * servers) { watches.append(try Self.startWatch(proxy)) }
        var perServer: [Int] = []
        try await Self.eventually("every watch reached a stand-in") {
            perServer = []
            for standIn in standIns { perServer.append(try await standIn.count("activeWatches")) }
            return perServer.reduce(0, +) == 2 * servers
        }
        let victim = servers == 2 ? 0 : 1
        #expect(perServer[victim] > 0, "watches per server: \(perServer)")

        let load = LoadGenerator(port: proxy.port, path: Self.listPath, concurrency: 64)
        load.start()
        try await Self.eventually("the load is running") { load.completed > 200 }
        let killedAt = ContinuousClock.now
        try await standIns[victim].kill9()
        let completedAtKill = load.completed
        try await Self.eventually("the load carries on", timeout: .seconds(20)) { load.completed > completedAtKill + 400 }
        let outcomes = await load.stop()

        let failed = outcomes.filter { !$0.failure.isEmpty }
        let failedAfterKill = failed.filter { $0.start > killedAt }
        #expect(failedAfterKill.count == 0, "\(failedAfterKill.count) requests started after the kill failed: \(failedAfterKill.prefix(3).map(\.failure))")
        #expect(failed.count <= 64, "at most the requests in flight may fail")
        #expect(outcomes.filter { $0.start > killedAt && $0.failure.isEmpty }.count >= 400)

        // Watches on the dead server end (curl sees the stream cut), the others stay open.
        try await Self.eventually("the dead server's watches ended") {
            watches.filter { !$0.process.isRunning }.count == perServer[victim]
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(watches.filter { !$0.process.isRunning }.count == perServer[victim])
        // What they received before the end is whole: both ADDED events, each a complete JSON line.
        for watch in watches where !watch.process.isRunning {
            let lines = watch.stdout.split(separator: "\n")
            #expect(lines.count == 2, "\(watch.stdout)")
            for line in lines {
                #expect((try? jsonObject(Data(line.utf8)))?["type"] as? String == "ADDED", "\(line)")
            }
        }
        // A new watch goes to a survivor.
        let survivors = standIns.indices.filter { $0 != victim }
        var before = 0
        for index in survivors { before += try await standIns[index].count("activeWatches") }
        watches.append(try Self.startWatch(proxy))
        try await Self.eventually("a new watch reached a survivor") {
            var now = 0
            for index in survivors { now += try await standIns[index].count("activeWatches") }
            return now == before + 1
        }
        #expect(watches.last!.process.isRunning)

        // Restarted on its port, it rejoins: requests reach it again.
        let restarted = try await standIns[victim].restarted()
        standIns[victim] = restarted
        try await Self.eventually("the restarted server gets requests") {
            _ = try await Self.get(proxy)
            let stats = try await restarted.stats()
            return ((stats["requestsByPath"] as? [String: Int])?[Self.listPath] ?? 0) > 0
        }
        #expect(try await Self.get(proxy).code == "200")

        for watch in watches { watch.terminate() }
        // Not SIGTERM: a graceful stop would wait for the watches' half-closed client connections.
        proxy.child.kill9()
        _ = try await proxy.child.waitForExit()
        for standIn in standIns { await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: no server at all

    /// All three down: a request waits; it succeeds when one comes back within the bound, and gets 503 with a
    /// Status after the bound when none does.
    @Test func withEveryServerDownRequestsWaitForOneThen503() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(3, directory: dir)
        let proxy = try await Self.startProxy(
            dir: dir, primary: standIns[0].url, failover: standIns.dropFirst().map(\.url), extra: ["--apiserver-wait=4s"])
        #expect(try await Self.get(proxy).code == "200")
        for standIn in standIns { try await standIn.stop() }

        let started = ContinuousClock.now
        async let waited = Self.get(proxy)
        try await Task.sleep(for: .seconds(1))
        try await standIns[2].restart()
        let answer = try await waited
        let elapsed = ContinuousClock.now - started
        #expect(answer.code == "200", "\(answer.body)")
        #expect(elapsed >= .seconds(1) && elapsed < .seconds(4), "answered after \(elapsed)")

        try await standIns[2].stop()
        let second = ContinuousClock.now
        let refused = try await Self.get(proxy)
        let waitedFor = ContinuousClock.now - second
        #expect(refused.code == "503")
        #expect(waitedFor >= .seconds(4) && waitedFor < .seconds(7), "503 after \(waitedFor)")
        let status = try jsonObject(Data(refused.body.utf8))
        #expect(status["kind"] as? String == "Status")
        #expect(status["code"] as? Int == 503)
        #expect((status["message"] as? String)?.contains("no apiserver is reachable") == true, "\(status)")

        await proxy.stop()
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: what is sent again

    /// A POST whose server refuses the connection reaches another one (nothing had been sent); a GOAWAY under load
    /// moves new requests to the other server without a single failure, and the server comes back.
    @Test func refusedAndGoAwayRequestsGoElsewhere() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir)
        let proxy = try await Self.startProxy(
            dir: dir, primary: standIns[0].url, failover: [standIns[1].url], extra: ["-v3"])

        try await standIns[0].stop()
        for index in 0..<4 {
            let r = try await Tool.curl([
                "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                "--data", #"{"metadata":{"name":"cm-\#(index)"},"data":{"k":"v"}}"#, proxy.baseURL + Self.listPath,
            ])
            #expect(r.text == "201")
        }
        #expect(Set(standIns[1].stats.requestsByPath.keys).contains(Self.listPath))
        // The first POST of each loop went to the stopped primary first (nothing reached it) and then elsewhere.
        #expect(proxy.child.stderr.contains("POST \(Self.listPath): sending it to another apiserver"))
        try await standIns[0].restart()
        try await Self.eventually("the primary rejoins") {
            _ = try await Self.get(proxy)
            return Self.requests(standIns[0]) > 0
        }

        let load = LoadGenerator(port: proxy.port, path: Self.listPath, concurrency: 16)
        load.start()
        try await Self.eventually("the load is running") { load.completed > 200 }
        await standIns[0].sendGoAway()
        let atGoAway = load.completed
        try await Self.eventually("the load carries on") { load.completed > atGoAway + 500 }
        standIns[0].resetStats()
        try await Self.eventually("the server that sent GOAWAY gets requests again") { Self.requests(standIns[0]) > 0 }
        let outcomes = await load.stop()
        #expect(outcomes.allSatisfy { $0.failure.isEmpty }, "\(outcomes.filter { !$0.failure.isEmpty }.prefix(3).map(\.failure))")

        await proxy.stop()
        for standIn in standIns { try? await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    /// An upgrade (exec, port-forward) goes to a reachable server and stays there.
    @Test func upgradeTunnelsGoToAReachableServer() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir)
        let proxy = try await Self.startProxy(dir: dir, primary: standIns[0].url, failover: [standIns[1].url])
        try await standIns[0].stop()
        for _ in 0..<2 {
            let client = try RawClient(port: proxy.port)
            client.send("GET /standin/tunnel HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
            var head = client.read(until: "auth=")
            if !head.hasSuffix("\n") { head += client.read(until: "\n") }
            #expect(head.hasPrefix("HTTP/1.1 101"))
            client.send("ping")
            #expect(String(decoding: client.readSome(), as: UTF8.self) == "ping")
            client.close()
        }
        #expect(standIns[1].stats.upgrades.values.reduce(0, +) == 2)
        await proxy.stop()
        try? await standIns[1].stop()
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: active checks

    /// With `--apiserver-readyz-interval`, a server whose /readyz fails gets no requests until it passes again.
    @Test func activeReadyzChecksTakeAnUnreadyServerOut() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir)
        let proxy = try await Self.startProxy(
            dir: dir, primary: standIns[0].url, failover: [standIns[1].url], extra: ["--apiserver-readyz-interval=200ms"])
        try await Self.eventually("both are checked") {
            standIns.allSatisfy { ($0.stats.requestsByPath["/readyz"] ?? 0) > 0 }
        }
        standIns[1].setReady(false)
        try await Self.eventually("the unready server is out") {
            proxy.child.stderr.contains("apiserver \(standIns[1].url) is unhealthy (/readyz: status 500)")
        }
        standIns[1].resetStats()
        for _ in 0..<10 { #expect(try await Self.get(proxy).code == "200") }
        #expect(Self.requests(standIns[1]) == 0)
        #expect(Self.requests(standIns[0]) >= 10)
        standIns[1].setReady(true)
        try await Self.eventually("it is back") {
            _ = try await Self.get(proxy)
            return Self.requests(standIns[1]) > 0
        }
        await proxy.stop()
        for standIn in standIns { try? await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: discovery

    /// `--discover-apiservers`: servers come and go with the `kubernetes` EndpointSlices (list, then watch).
    @Test func discoveryFollowsTheKubernetesEndpointSlices() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(3, directory: dir)
        // The cluster's shared state: every stand-in holds the same slices (apiservers share etcd).
        func everywhere(_ change: (StandIn) throws -> Void) rethrows {
            for standIn in standIns { try change(standIn) }
        }
        try everywhere { try $0.setAPIServerEndpointSlice(name: "kubernetes", addresses: ["127.0.0.1"], port: standIns[1].port) }
        try everywhere { try $0.setAPIServerEndpointSlice(name: "kubernetes-2", addresses: ["127.0.0.1"], port: standIns[2].port) }
        let proxy = try await Self.startProxy(
            dir: dir, primary: standIns[0].url, failover: [], extra: ["--discover-apiservers", "-v3"])
        try await Self.eventually("both discovered servers get requests") {
            _ = try await Self.get(proxy)
            return Self.requests(standIns[1]) > 0 && Self.requests(standIns[2]) > 0
        }
        // A slice goes away: so does its server.
        try everywhere { try $0.deleteEndpointSlice(name: "kubernetes-2") }
        try await Self.eventually("the server left the set") {
            proxy.child.stderr.contains("apiservers: \(standIns[0].url), \(standIns[1].url)\n")
        }
        standIns[2].resetStats()
        for _ in 0..<12 { #expect(try await Self.get(proxy).code == "200") }
        #expect(Self.requests(standIns[2]) == 0)
        // A slice changes (the watch's MODIFIED): the server list follows.
        try everywhere { try $0.setAPIServerEndpointSlice(name: "kubernetes", addresses: ["127.0.0.1"], port: standIns[2].port) }
        try await Self.eventually("the modified slice is used") {
            _ = try await Self.get(proxy)
            return Self.requests(standIns[2]) > 0
        }
        await proxy.stop()
        for standIn in standIns { try? await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    /// Without permission to read EndpointSlices, proxyd says so once and carries on with what it has.
    @Test func discoveryRefusedIsLoggedOnceAndProxydCarriesOn() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir) { _, configuration in
            configuration.forbidden = [ForbiddenRule(verb: "list", resource: "endpointslices", namespace: "default")]
        }
        let proxy = try await Self.startProxy(
            dir: dir, primary: standIns[0].url, failover: [standIns[1].url], extra: ["--discover-apiservers"])
        try await Self.eventually("the refusal is logged") { proxy.child.stderr.contains("was refused (403)") }
        for _ in 0..<6 { #expect(try await Self.get(proxy).code == "200") }
        #expect(Self.requests(standIns[0]) > 0 && Self.requests(standIns[1]) > 0)
        #expect(proxy.child.stderr.components(separatedBy: "was refused (403)").count == 2)
        #expect(proxy.child.stderr.contains("endpointslices.discovery.k8s.io is forbidden"))
        await proxy.stop()
        for standIn in standIns { try? await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    /// Unusable values stop start-up with a message naming the flag.
    @Test(arguments: [
        (["--failover-server=http://127.0.0.1:6443"], "error: invalid --failover-server \"http://127.0.0.1:6443\": the scheme must be the cluster server's (https)"),
        (["--failover-server=https://127.0.0.1:0"], "error: invalid --failover-server \"https://127.0.0.1:0\": invalid port"),
        (["--failover-server=https://127.0.0.1:1", "--apiserver-wait=soon"], "error: invalid argument \"soon\" for \"--apiserver-wait\" flag: time: invalid duration \"soon\""),
        (["--discover-apiservers=true", "--apiserver-retry-max=0s"], "error: invalid argument \"0s\" for \"--apiserver-retry-max\" flag: must be positive"),
    ])
    func unusableFlagsStopStartup(arguments: [String], message: String) async throws {
        let dir = try TempDirectory.make()
        let kubeconfig = dir.appendingPathComponent("kubeconfig").path
        try """
            apiVersion: v1
            kind: Config
            clusters: [{name: s, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
            users: [{name: u, user: {token: t}}]
            contexts: [{name: x, context: {cluster: s, user: u}}]
            current-context: x
            """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        let child = try ChildProcess(executable: BuildProducts.proxyd, arguments: ["--kubeconfig", kubeconfig, "--port=0"] + arguments)
        #expect(try await child.waitForExit() == 1)
        #expect(child.stderr.contains(message), "\(child.stderr)")
        try? FileManager.default.removeItem(at: dir)
    }

    /// A failover server is verified with the primary's name, not its own address: here its certificate names only
    /// `localhost`, and it is reached at 127.0.0.1 (an IP it does not hold) with the primary at `localhost`.
    @Test func aFailoverServerIsVerifiedWithThePrimaryName() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(2, directory: dir) { index, configuration in
            if index == 1 { configuration.serverNames = ["localhost"] }
        }
        let proxy = try await Self.startProxy(
            dir: dir, primary: "https://localhost:\(standIns[0].port)", failover: [standIns[1].url])
        try await Self.eventually("both servers answer") {
            let code = try await Self.get(proxy).code
            #expect(code == "200")
            return Self.requests(standIns[0]) > 0 && Self.requests(standIns[1]) > 0
        }
        #expect(!proxy.child.stderr.contains("is unhealthy"))
        await proxy.stop()
        for standIn in standIns { try? await standIn.stop() }
        try? FileManager.default.removeItem(at: dir)
    }

    /// Every stand-in has its own server certificate; all are verified with the one CA and the primary's name.
    @Test func aServerWithAnotherCAIsRejected() async throws {
        let dir = try TempDirectory.make()
        let standIns = try await StandInCluster.start(1, directory: dir)
        let stranger = try await StandIn.start(StandInConfiguration())  // its own CA
        let proxy = try await Self.startProxy(dir: dir, primary: standIns[0].url, failover: [stranger.url])
        for _ in 0..<6 { #expect(try await Self.get(proxy).code == "200") }
        #expect(Self.requests(stranger) == 0)
        #expect(proxy.child.stderr.contains("apiserver \(stranger.url) is unhealthy"))
        await proxy.stop()
        try? await stranger.stop()
        try? await standIns[0].stop()
        try? FileManager.default.removeItem(at: dir)
    }
}
