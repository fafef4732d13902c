import Testing

@testable import ProxyCore

/// `/livez`, `/healthz` and `/readyz` decided from gathered facts with a made-up clock.
@Suite struct HealthChecksTests {
    static let second: UInt64 = 1_000_000_000

    static func facts(
        now: UInt64 = 100 * second, loops: [LoopHealth] = [LoopHealth(lastUpstreamSuccess: 99 * second)],
        loopCount: Int? = nil, credentialFailure: String? = nil, revision: UInt64 = 0, stopping: Bool = false
    ) -> HealthFacts {
        HealthFacts(
            now: now, loopCount: loopCount ?? loops.count, loops: loops, credentialFailure: credentialFailure,
            credentialRevision: revision, stopping: stopping)
    }

    static func failures(_ checks: [HealthCheck]) -> [String: String] {
        var out: [String: String] = [:]
        for check in checks { if let failure = check.failure { out[check.name] = failure } }
        return out
    }

    @Test func healthy() {
        #expect(Self.failures(HealthPolicy.readyz(Self.facts())).isEmpty)
        #expect(HealthPolicy.readyz(Self.facts()).map(\.name) == ["loops", "upstream", "credentials", "shutdown"])
        #expect(HealthPolicy.livez(Self.facts()).map(\.name) == ["loops"])
    }

    @Test func aLoopThatDidNotAnswer() {
        let f = Self.facts(loopCount: 2)
        #expect(Self.failures(HealthPolicy.livez(f)) == ["loops": "1 of 2 event loops did not answer within 1s"])
    }

    @Test func upstreamSilentForLongerThanTheBound() {
        let stale = Self.facts(now: 200 * Self.second, loops: [LoopHealth(lastUpstreamSuccess: 184 * Self.second)])
        #expect(Self.failures(HealthPolicy.readyz(stale))["upstream"] == "no answer from the apiserver for 16s")
        let fresh = Self.facts(now: 200 * Self.second, loops: [LoopHealth(lastUpstreamSuccess: 186 * Self.second)])
        #expect(Self.failures(HealthPolicy.readyz(fresh))["upstream"] == nil)
    }

    @Test func aFailureAfterTheLastSuccessFailsAtOnce() {
        var failing = LoopHealth(lastUpstreamSuccess: 98 * Self.second)
        failing.recordUpstreamFailure("dial tcp 127.0.0.1:6443: connection refused", now: 99 * Self.second)
        let f = Self.facts(loops: [failing])
        #expect(
            Self.failures(HealthPolicy.readyz(f))["upstream"]
                == "the last connection to the apiserver failed: dial tcp 127.0.0.1:6443: connection refused")
        // Another loop's later success outweighs it.
        let recovered = Self.facts(loops: [failing, LoopHealth(lastUpstreamSuccess: 99 * Self.second + 1)])
        #expect(Self.failures(HealthPolicy.readyz(recovered))["upstream"] == nil)
    }

    @Test func noConnectionYet() {
        let f = Self.facts(loops: [LoopHealth()])
        #expect(Self.failures(HealthPolicy.readyz(f))["upstream"] == "no connection to the apiserver yet")
    }

    @Test func credentials() {
        let missing = Self.facts(credentialFailure: "getting credentials: exec: executable x not found")
        #expect(Self.failures(HealthPolicy.readyz(missing))["credentials"] == "getting credentials: exec: executable x not found")

        var rejected = LoopHealth(lastUpstreamSuccess: 99 * Self.second)
        rejected.recordAuth(status: 200, revision: 3, now: 10)
        rejected.recordAuth(status: 401, revision: 3, now: 20)
        let now401 = Self.facts(loops: [rejected], revision: 3)
        #expect(Self.failures(HealthPolicy.readyz(now401))["credentials"]?.hasPrefix("the apiserver answered 401") == true)
        // About an older credential: not held against the current one.
        #expect(Self.failures(HealthPolicy.readyz(Self.facts(loops: [rejected], revision: 4)))["credentials"] == nil)
        // A later success with the same credential clears it.
        rejected.recordAuth(status: 200, revision: 3, now: 30)
        #expect(Self.failures(HealthPolicy.readyz(Self.facts(loops: [rejected], revision: 3)))["credentials"] == nil)
    }

    @Test func authAnswersForANewerRevisionStartClean() {
        var h = LoopHealth()
        h.recordAuth(status: 401, revision: 1, now: 10)
        h.recordAuth(status: 200, revision: 2, now: 20)
        #expect(h.authRevision == 2 && h.lastAuthRejected == 0 && h.lastAuthAccepted == 20)
        h.recordAuth(status: 401, revision: 1, now: 30)  // a late answer about the old credential
        #expect(h.authRevision == 2 && h.lastAuthRejected == 0)
    }

    @Test func shuttingDown() {
        #expect(Self.failures(HealthPolicy.readyz(Self.facts(stopping: true)))["shutdown"] == "proxyd is shutting down")
        #expect(Self.failures(HealthPolicy.livez(Self.facts(stopping: true))).isEmpty)
    }

    // MARK: several apiservers

    static func server(_ port: Int, healthy: Bool = true, reason: String? = nil, answered: Bool = true) -> ServerFacts {
        ServerFacts(
            url: "https://127.0.0.1:\(port)", authority: "127.0.0.1:\(port)", healthy: healthy, reason: reason,
            answered: answered)
    }

    /// Ready while one server is reachable; each server is an informational check of its own.
    @Test func severalServersReadyWhileOneIsReachable() {
        var f = Self.facts(loops: [LoopHealth()])  // the one-server facts play no part
        f.servers = [Self.server(1), Self.server(2, healthy: false, reason: "cannot connect: connection refused")]
        let checks = HealthPolicy.readyz(f)
        #expect(checks.map(\.name) == [
            "loops", "upstream", "upstream:127.0.0.1:1", "upstream:127.0.0.1:2", "credentials", "shutdown",
        ])
        #expect(Self.failures(checks) == ["upstream:127.0.0.1:2": "cannot connect: connection refused"])
        let verbose = HealthResponse.render(endpoint: "readyz", checks: checks, only: nil, verbose: true, excluded: [])
        #expect(verbose.status == 200)
        #expect(verbose.body == """
            [+]loops ok
            [+]upstream ok
            [+]upstream:127.0.0.1:1 ok
            [-]upstream:127.0.0.1:2 failed: cannot connect: connection refused
            [+]credentials ok
            [+]shutdown ok
            readyz check passed

            """)
        #expect(HealthResponse.render(endpoint: "readyz", checks: checks, only: nil, verbose: false, excluded: []) == (200, "ok"))
        // Asked for alone, a server's check counts.
        let one = HealthResponse.render(
            endpoint: "readyz", checks: checks, only: "upstream:127.0.0.1:2", verbose: false, excluded: [])
        #expect(one.status == 503)
        #expect(one.body == "upstream:127.0.0.1:2 failed: cannot connect: connection refused\n")
    }

    @Test func severalServersNoneReachable() {
        var f = Self.facts()
        f.servers = [Self.server(1, healthy: false, reason: "it sent GOAWAY"), Self.server(2, answered: false)]
        let answer = HealthResponse.render(
            endpoint: "readyz", checks: HealthPolicy.readyz(f), only: nil, verbose: false, excluded: [])
        #expect(answer.status == 503)
        #expect(answer.body == "upstream failed: no apiserver is reachable (https://127.0.0.1:1: it sent GOAWAY; https://127.0.0.1:2: no connection yet)\n")
        // Credentials are judged as with one server.
        f.servers = [Self.server(1)]
        f.credentialFailure = "getting credentials: exec: executable x not found"
        #expect(Self.failures(HealthPolicy.readyz(f)).keys.sorted() == ["credentials"])
    }

    // MARK: rendering

    static let mixed = [
        HealthCheck(name: "loops"), HealthCheck(name: "upstream", failure: "no connection to the apiserver yet"),
        HealthCheck(name: "credentials"),
    ]

    @Test func renderLikeTheApiserver() {
        let ok = HealthResponse.render(
            endpoint: "readyz", checks: [HealthCheck(name: "loops")], only: nil, verbose: false, excluded: [])
        #expect(ok.status == 200 && ok.body == "ok")
        let failed = HealthResponse.render(endpoint: "readyz", checks: Self.mixed, only: nil, verbose: false, excluded: [])
        #expect(failed.status == 503)
        #expect(failed.body == "upstream failed: no connection to the apiserver yet\n")
        let verbose = HealthResponse.render(endpoint: "readyz", checks: Self.mixed, only: nil, verbose: true, excluded: [])
        #expect(verbose.body == """
            [+]loops ok
            [-]upstream failed: no connection to the apiserver yet
            [+]credentials ok
            readyz check failed

            """)
        let livez = HealthResponse.render(endpoint: "livez", checks: Self.mixed, only: nil, verbose: false, excluded: [])
        #expect(livez.status == 500)
    }

    @Test func excludeAndSingleChecks() {
        let excluded = HealthResponse.render(
            endpoint: "readyz", checks: Self.mixed, only: nil, verbose: true, excluded: ["upstream"])
        #expect(excluded.status == 200)
        #expect(excluded.body == "[+]loops ok\n[+]credentials ok\n[+]upstream excluded: ok\nreadyz check passed\n")
        let one = HealthResponse.render(endpoint: "readyz", checks: Self.mixed, only: "credentials", verbose: false, excluded: [])
        #expect(one.status == 200 && one.body == "ok")
        let unknown = HealthResponse.render(endpoint: "readyz", checks: Self.mixed, only: "etcd", verbose: false, excluded: [])
        #expect(unknown.status == 404)
    }

    @Test func healthPaths() {
        #expect(AdminServer.healthEndpoint("/readyz")! == ("readyz", nil))
        #expect(AdminServer.healthEndpoint("/livez/loops")! == ("livez", "loops"))
        #expect(AdminServer.healthEndpoint("/readyz/") == nil)
        #expect(AdminServer.healthEndpoint("/metrics") == nil)
        #expect(AdminServer.healthEndpoint("/readyz/a/b") == nil)
    }
}

@Suite struct AdminAddressTests {
    @Test(arguments: [
        ("127.0.0.1:10249", AdminAddress.tcp(host: "127.0.0.1", port: 10249)),
        ("0.0.0.0:10256", .tcp(host: "0.0.0.0", port: 10256)),
        ("[::1]:9", .tcp(host: "::1", port: 9)),
        ("localhost:0", .tcp(host: "localhost", port: 0)),
        ("10249", .tcp(host: "127.0.0.1", port: 10249)),
        (":10249", .tcp(host: "127.0.0.1", port: 10249)),
        ("unix:/run/proxyd/metrics.sock", .unix(path: "/run/proxyd/metrics.sock")),
        ("/run/proxyd/health.sock", .unix(path: "/run/proxyd/health.sock")),
    ])
    func parses(_ text: String, _ address: AdminAddress) throws {
        #expect(try AdminAddress.parse(text, flag: "metrics-bind-address") == address)
    }

    @Test func offWhenEmptyOrZero() throws {
        #expect(try AdminAddress.parse("", flag: "x") == nil)
        #expect(try AdminAddress.parse("0", flag: "x") == nil)
    }

    @Test(arguments: [
        ("127.0.0.1", "missing port (want host:port, for example 127.0.0.1:10249)"),
        ("::1:80", "an IPv6 address needs brackets: [::1]:10256"),
        ("host:http", "invalid port \"http\""),
        ("host:70000", "invalid port \"70000\""),
        ("unix:relative", "the unix socket path must be absolute"),
    ])
    func rejects(_ text: String, _ reason: String) {
        #expect(throws: AdminAddressError.self) { try AdminAddress.parse(text, flag: "healthz-bind-address") }
        do {
            _ = try AdminAddress.parse(text, flag: "healthz-bind-address")
        } catch {
            #expect(error.description == "invalid argument \"\(text)\" for \"--healthz-bind-address\": \(reason)")
        }
    }
}
