import Foundation
import StandInServer
import Testing

/// Exec credential plugins end to end: small shell plugins written by the test, a stand-in that only accepts the
/// tokens the test allows, and counts of plugin runs (a line per run) and of upstream requests per path.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ExecPluginTests {
    /// A plugin that appends a line to `runs`, copies its `KUBERNETES_EXEC_INFO` and `PLUGIN_REGION` into files,
    /// writes a line to stderr, and answers `tokenCommand`'s output as its token (with `expiry` seconds of life
    /// if given).
    static func writePlugin(
        in dir: URL, tokenCommand: String, expiry: Int? = nil, sleep: String? = nil,
        apiVersion: String = "client.authentication.k8s.io/v1", extraLine: String = ""
    ) throws -> String {
        let d = dir.path
        let expiration = expiry.map { "date -u -d '+\($0) seconds' +%Y-%m-%dT%H:%M:%S.%NZ" } ?? "true"
        let script = """
            #!/bin/sh
            echo run >> "\(d)/runs"
            printf '%s' "$KUBERNETES_EXEC_INFO" > "\(d)/exec-info"
            printf '%s' "$PLUGIN_REGION" > "\(d)/region"
            echo "plugin-diagnostic: fetching a token" >&2
            \(sleep.map { "sleep \($0)" } ?? "")
            \(extraLine)
            token=$(\(tokenCommand))
            expiry=$(\(expiration))
            if [ -n "$expiry" ]; then
              printf '{"apiVersion":"\(apiVersion)","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}' "$token" "$expiry"
            else
              printf '{"apiVersion":"\(apiVersion)","kind":"ExecCredential","status":{"token":"%s"}}' "$token"
            fi

            """
        let path = dir.appendingPathComponent("plugin.sh").path
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        return path
    }

    static func kubeconfig(
        _ standIn: StandIn, dir: URL, command: String, interactiveMode: String = "Never", installHint: String? = nil,
        apiVersion: String = "client.authentication.k8s.io/v1"
    ) throws -> String {
        let hint = installHint.map { ", installHint: \"\($0)\"" } ?? ""
        return try writeKubeconfig(
            in: dir, server: standIn.url,
            user: """
                {exec: {apiVersion: \(apiVersion), command: \(command), args: [get-token], \
                env: [{name: PLUGIN_REGION, value: eu-west}], provideClusterInfo: true, \
                interactiveMode: \(interactiveMode)\(hint)}}
                """, name: "kubeconfig-exec")
    }

    static func runs(_ h: Harness) -> Int { runs(h.directory) }

    static func runs(_ directory: URL) -> Int {
        let text = (try? String(contentsOf: directory.appendingPathComponent("runs"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").count
    }

    static func setToken(_ h: Harness, _ token: String) throws {
        try token.write(to: h.directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
    }

    static func start(
        tokens: [String], expiry: Int? = nil, tokenCommand: String? = nil, sleep: String? = nil, http2: Bool = true,
        unauthorizedBeforeBody: Bool = false
    ) async throws -> Harness {
        try await Harness.start(
            standIn: {
                $0.tokens = tokens
                $0.enableHTTP2 = http2
                $0.unauthorizedBeforeBody = unauthorizedBeforeBody
            },
            proxyArguments: ["-v=6", "--access-log"],
            kubeconfig: { standIn, dir in
                try (tokens.first ?? "").write(
                    to: dir.appendingPathComponent("token"), atomically: true, encoding: .utf8)
                let plugin = try writePlugin(
                    in: dir, tokenCommand: tokenCommand ?? "cat \(dir.path)/token", expiry: expiry, sleep: sleep)
                return try kubeconfig(standIn, dir: dir, command: plugin)
            })
    }

    static func code(_ url: String, _ extra: [String] = []) async throws -> String {
        try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}"] + extra + [url]).text
    }

    @Test func pluginTokenIsAcceptedAndThePluginGetsClusterInfo() async throws {
        let h = try await Self.start(tokens: ["plugin-token-a1"])
        // Run once at start-up, before any request.
        #expect(Self.runs(h) == 1)
        let echo = try jsonObject(try await Tool.curl(["\(h.url)/standin/echo/x"]).stdout)
        #expect(echo["authenticatedBy"] as? String == "token")
        #expect((echo["headers"] as? [String: [String]])?["authorization"] == ["Bearer plugin-token-a1"])
        #expect(Self.runs(h) == 1)  // cached: no expiry, so no second run

        let info = try jsonObject(try Data(contentsOf: h.directory.appendingPathComponent("exec-info")))
        #expect(info["apiVersion"] as? String == "client.authentication.k8s.io/v1")
        #expect(info["kind"] as? String == "ExecCredential")
        let spec = info["spec"] as? [String: Any]
        #expect(spec?["interactive"] as? Bool == false)
        let cluster = spec?["cluster"] as? [String: Any]
        #expect(cluster?["server"] as? String == h.standIn.url)
        #expect(cluster?["certificate-authority-data"] as? String == Data(h.standIn.caPEM.utf8).base64EncodedString())
        #expect(try String(contentsOf: h.directory.appendingPathComponent("region"), encoding: .utf8) == "eu-west")

        let stderr = h.proxy.child.stderr
        #expect(stderr.contains("plugin-diagnostic: fetching a token"))  // the plugin's stderr passes through
        #expect(!stderr.contains("plugin-token-a1"))
        await h.stop()
    }

    @Test func expiringCredentialIsReplacedBeforeItExpires() async throws {
        // Each run issues tok-N (N = run number) valid for 2 s.
        let allowed = (1...40).map { "tok-\($0)" }
        let h2 = try await Harness.start(
            standIn: { $0.tokens = allowed },
            proxyArguments: ["-v=6"],
            kubeconfig: { standIn, dir in
                let plugin = try Self.writePlugin(
                    in: dir, tokenCommand: "echo tok-$(wc -l < \(dir.path)/runs | tr -d ' ')", expiry: 2)
                return try Self.kubeconfig(standIn, dir: dir, command: plugin)
            })
        let start = ContinuousClock.now
        var requests = 0
        var codes: [String] = []
        var lastAuthorization = ""
        var revokedFirst = false
        while ContinuousClock.now - start < .milliseconds(4500) {
            if !revokedFirst && ContinuousClock.now - start > .milliseconds(2300) {
                // tok-1 has expired: the apiserver accepts only later tokens from now on.
                h2.standIn.setTokens(Array(allowed.dropFirst()))
                revokedFirst = true
            }
            let result = try await Tool.curl(["-w", "\n%{http_code}", "\(h2.url)/standin/echo/e"])
            requests += 1
            let lines = result.text.split(separator: "\n")
            codes.append(String(lines.last ?? ""))
            if let body = lines.first, let echo = try? jsonObject(Data(body.utf8)) {
                lastAuthorization = (echo["headers"] as? [String: [String]])?["authorization"]?.first ?? ""
            }
            try await Task.sleep(for: .milliseconds(150))
        }
        #expect(codes.allSatisfy { $0 == "200" }, "codes: \(codes)")
        // Refreshed in the background before expiry: no request met a 401 (none was sent twice).
        #expect(h2.standIn.stats.requestsByPath["/standin/echo/e"] == requests)
        #expect(Self.runs(h2) >= 3)
        #expect(lastAuthorization.hasPrefix("Bearer tok-") && lastAuthorization != "Bearer tok-1")
        // With no requests at all, the plugin still runs before each expiry.
        let idleFrom = Self.runs(h2)
        try await Task.sleep(for: .milliseconds(3500))
        #expect(Self.runs(h2) >= idleFrom + 2)
        #expect(!h2.proxy.child.stderr.contains("tok-1\""))
        await h2.stop()
    }

    @Test func a401RerunsThePluginAndRetriesOnce() async throws {
        let h = try await Self.start(tokens: ["tok-a"])
        #expect(try await Self.code("\(h.url)/standin/echo/warm") == "200")
        #expect(Self.runs(h) == 1)

        // The apiserver rotates: the old token gets 401, the plugin now returns the new one.
        try Self.setToken(h, "tok-b")
        h.standIn.setTokens(["tok-b"])
        let echo = try jsonObject(try await Tool.curl(["\(h.url)/standin/echo/r"]).stdout)
        #expect((echo["headers"] as? [String: [String]])?["authorization"] == ["Bearer tok-b"])
        #expect(Self.runs(h) == 2)
        #expect(h.standIn.stats.requestsByPath["/standin/echo/r"] == 2)  // the 401, then the retry

        // A small POST is replayed with its body intact.
        try Self.setToken(h, "tok-c")
        h.standIn.setTokens(["tok-c"])
        let body = String(repeating: "0123456789abcdef", count: 1000)  // 16 000 bytes, under the replay limit
        let bodyFile = h.directory.appendingPathComponent("small-body")
        try body.write(to: bodyFile, atomically: true, encoding: .utf8)
        let posted = try jsonObject(
            try await Tool.curl(["-X", "POST", "--data-binary", "@\(bodyFile.path)", "\(h.url)/standin/echo/p"]).stdout)
        #expect(posted["method"] as? String == "POST")
        #expect(posted["bodyLength"] as? Int == 16_000)
        let expected = try await Tool.run("sha256sum", [bodyFile.path]).text.prefix(64)
        #expect(posted["bodySHA256"] as? String == String(expected))
        #expect(Self.runs(h) == 3)

        // A POST over the limit is not kept: its 401 is relayed, and the next request uses the new token.
        try Self.setToken(h, "tok-d")
        h.standIn.setTokens(["tok-d"])
        let bigFile = h.directory.appendingPathComponent("big-body")
        try Data(count: 100 * 1024).write(to: bigFile)
        #expect(try await Self.code("\(h.url)/standin/echo/big", ["-X", "POST", "--data-binary", "@\(bigFile.path)"]) == "401")
        #expect(Self.runs(h) == 4)
        #expect(try await Self.code("\(h.url)/standin/echo/after") == "200")
        #expect(h.standIn.stats.requestsByPath["/standin/echo/after"] == 1)
        #expect(Self.runs(h) == 4)

        // A client's own Authorization is never retried or refreshed for.
        #expect(try await Self.code("\(h.url)/standin/echo/own", ["-H", "Authorization: Bearer client-own"]) == "401")
        #expect(h.standIn.stats.requestsByPath["/standin/echo/own"] == 1)
        #expect(Self.runs(h) == 4)

        let stderr = h.proxy.child.stderr
        for token in ["tok-a", "tok-b", "tok-c", "tok-d"] { #expect(!stderr.contains(token)) }
        await h.stop()
    }

    @Test(arguments: [true, false])
    func a401BeforeTheBodyEndsWaitsForItAndRetries(http2: Bool) async throws {
        // As a real apiserver, the stand-in answers 401 on the head, while the client is still sending its body.
        let h = try await Self.start(tokens: ["tok-a"], http2: http2, unauthorizedBeforeBody: true)
        try Self.setToken(h, "tok-b")
        h.standIn.setTokens(["tok-b"])
        let client = try RawClient(port: h.proxy.port)
        client.send(
            "POST /standin/echo/early HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234")
        try await Task.sleep(for: .milliseconds(500))  // the 401 arrives meanwhile
        #expect(h.standIn.stats.requestsByPath["/standin/echo/early"] == 1)
        client.send("56789")
        let response = client.readToEnd()
        #expect(response.hasPrefix("HTTP/1.1 200"), "\(response.prefix(300))")
        #expect(response.contains(#""bodyLength":10"#))
        #expect(response.contains("Bearer tok-b"))
        #expect(h.standIn.stats.requestsByPath["/standin/echo/early"] == 2)
        #expect(Self.runs(h) == 2)
        await h.stop()
    }

    @Test func retryOverHTTP1Upstream() async throws {
        let h = try await Self.start(tokens: ["tok-a"], http2: false)
        #expect(try await Self.code("\(h.url)/standin/echo/warm") == "200")
        try Self.setToken(h, "tok-b")
        h.standIn.setTokens(["tok-b"])
        for i in 0..<3 {
            let echo = try jsonObject(try await Tool.curl(["\(h.url)/standin/echo/h1-\(i)"]).stdout)
            #expect(echo["protocol"] as? String != nil && echo["protocol"] as? String != "h2")
            #expect((echo["headers"] as? [String: [String]])?["authorization"] == ["Bearer tok-b"])
        }
        #expect(Self.runs(h) == 2)
        #expect(h.standIn.stats.requestsByPath["/standin/echo/h1-0"] == 2)
        #expect(h.standIn.stats.requestsByPath["/standin/echo/h1-1"] == 1)
        await h.stop()
    }

    @Test func requestFindingAnExpiredCredentialWaitsForTheNewOne() async throws {
        // Each run issues tok-N valid for 1 s; runs after the first take 1 s, so the background refresh (due at
        // expiry) is still running when the next request arrives with tok-1 expired.
        let allowed = (1...20).map { "tok-\($0)" }
        let h = try await Harness.start(
            standIn: { $0.tokens = allowed },
            kubeconfig: { standIn, dir in
                let plugin = try Self.writePlugin(
                    in: dir, tokenCommand: "echo tok-$(wc -l < \(dir.path)/runs | tr -d ' ')", expiry: 1,
                    extraLine: "if [ $(wc -l < \(dir.path)/runs) -ge 2 ]; then sleep 1; fi")
                return try Self.kubeconfig(standIn, dir: dir, command: plugin)
            })
        try await Task.sleep(for: .milliseconds(1300))
        h.standIn.setTokens(Array(allowed.dropFirst()))
        let bodyFile = h.directory.appendingPathComponent("body")
        try String(repeating: "x", count: 20_000).write(to: bodyFile, atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        let echo = try jsonObject(
            try await Tool.curl(["-X", "POST", "--data-binary", "@\(bodyFile.path)", "\(h.url)/standin/echo/w"]).stdout)
        let waited = ContinuousClock.now - started
        #expect((echo["headers"] as? [String: [String]])?["authorization"] == ["Bearer tok-2"])
        #expect(echo["bodyLength"] as? Int == 20_000)
        #expect(h.standIn.stats.requestsByPath["/standin/echo/w"] == 1)  // sent once, with the new token
        #expect(Self.runs(h) == 2)
        #expect(waited > .milliseconds(200))
        await h.stop()
    }

    @Test func concurrent401sRunThePluginOnce() async throws {
        // The plugin takes a while, so all requests meet the 401 while the refresh is running.
        let h = try await Self.start(tokens: ["tok-a"], sleep: "0.5")
        #expect(try await Self.code("\(h.url)/standin/echo/warm") == "200")
        try Self.setToken(h, "tok-b")
        h.standIn.setTokens(["tok-b"])
        let url = h.url
        let codes = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<8 {
                group.addTask { try await Self.code("\(url)/standin/echo/c\(i)") }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(codes == Array(repeating: "200", count: 8))
        #expect(Self.runs(h) == 2)
        let upstream = (0..<8).map { h.standIn.stats.requestsByPath["/standin/echo/c\($0)"] ?? 0 }
        #expect(upstream.allSatisfy { $0 == 1 || $0 == 2 })
        #expect(upstream.reduce(0, +) > 8)  // at least some did meet the 401
        await h.stop()
    }

    @Test func clientCertificateFromPluginIsPresented() async throws {
        let h = try await Harness.start(
            standIn: { $0.tokens = ["only-this-token"] },
            kubeconfig: { standIn, dir in
                let credential: [String: Any] = [
                    "apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                    "status": ["clientCertificateData": standIn.clientCertificatePEM, "clientKeyData": standIn.clientKeyPEM],
                ]
                try JSONSerialization.data(withJSONObject: credential).write(to: dir.appendingPathComponent("cred.json"))
                let plugin = dir.appendingPathComponent("cert-plugin.sh").path
                try "#!/bin/sh\necho run >> \"\(dir.path)/runs\"\ncat \"\(dir.path)/cred.json\"\n"
                    .write(toFile: plugin, atomically: true, encoding: .utf8)
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: plugin)
                return try Self.kubeconfig(
                    standIn, dir: dir, command: plugin, apiVersion: "client.authentication.k8s.io/v1beta1")
            })
        let echo = try jsonObject(try await Tool.curl(["\(h.url)/standin/echo/cert"]).stdout)
        #expect(echo["authenticatedBy"] as? String == "certificate")
        #expect(echo["clientCertificateCN"] as? String == "standin-client")
        #expect((echo["headers"] as? [String: [String]])?["authorization"] == nil)
        #expect(Self.runs(h) == 1)
        #expect(!h.proxy.child.stderr.contains("PRIVATE KEY"))
        await h.stop()
    }

    /// A missing plugin does not stop proxyd: each request gets a 503 `Status` with kubectl's text and the
    /// kubeconfig's install hint.
    @Test func missingCommandIsReportedToEachRequestWithTheInstallHint() async throws {
        let standIn = try await StandIn.start(StandInConfiguration())
        let dir = try TempDirectory.make()
        try standIn.writeState(to: dir.path)
        let kubeconfig = try Self.kubeconfig(
            standIn, dir: dir, command: "proxyd-e2e-no-such-plugin",
            installHint: "Install proxyd-e2e-no-such-plugin from the example repository")
        let proxy = try await RunningProxy.start(arguments: ["--port=0", "--kubeconfig", kubeconfig])
        let answer = try await Tool.curl(["-w", "\n%{http_code}", "\(proxy.baseURL)/api"])
        #expect(answer.text.hasSuffix("\n503"))
        let status = try jsonObject(Data(answer.text.dropLast(4).utf8))
        #expect(status["kind"] as? String == "Status")
        #expect(status["code"] as? Int == 503)
        let message = status["message"] as? String ?? ""
        #expect(message.contains("exec: executable proxyd-e2e-no-such-plugin not found"))
        #expect(message.contains("Install proxyd-e2e-no-such-plugin from the example repository"))
        #expect(proxy.child.stderr.contains("It looks like you are trying to use a client-go credential plugin that is not installed."))
        await proxy.stop()
        try? await standIn.stop()
    }

    /// The issue's case: a plugin that fails when proxyd starts (an expired SSO session, say). proxyd serves
    /// anyway, answers 503 `Status` with the plugin's error (never its output), `/readyz` says why, the plugin is
    /// retried with a back-off, and once it works again requests succeed and `/readyz` turns 200, no restart.
    @Test func failingPluginAtStartupAnswers503AndRecovers() async throws {
        let standIn = try await StandIn.start(StandInConfiguration())
        let dir = try TempDirectory.make()
        try standIn.writeState(to: dir.path)
        let plugin = dir.appendingPathComponent("fail.sh").path
        try """
            #!/bin/sh
            echo run >> "\(dir.path)/runs"
            if [ ! -e "\(dir.path)/logged-in" ]; then echo 'plugin: refresh token revoked' >&2; exit 3; fi
            printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"standin-token"}}'

            """.write(toFile: plugin, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: plugin)
        let kubeconfig = try Self.kubeconfig(standIn, dir: dir, command: plugin)
        let proxy = try await RunningProxy.start(
            arguments: ["--port=0", "--kubeconfig", kubeconfig, "--healthz-bind-address=127.0.0.1:0"])
        let health = try #require(proxy.adminURL)
        #expect(proxy.child.stderr.contains("plugin: refresh token revoked"))  // its stderr passes through

        let answer = try await Tool.curl(["-w", "\n%{http_code}", "\(proxy.baseURL)/api/v1/namespaces"])
        #expect(answer.text.hasSuffix("\n503"))
        let status = try jsonObject(Data(answer.text.dropLast(4).utf8))
        #expect(status["reason"] as? String == "ServiceUnavailable")
        #expect(
            status["message"] as? String
                == "proxyd: no credentials for the apiserver: getting credentials: exec: executable \(plugin) failed with exit code 3")
        #expect(standIn.stats.requestsByPath["/api/v1/namespaces"] == nil)  // nothing went upstream

        let ready = try await Tool.curl(["-w", "\n%{http_code}", "\(health)/readyz"])
        #expect(ready.text.hasSuffix("\n503"))
        #expect(ready.text.contains("credentials failed: getting credentials: exec: executable \(plugin) failed with exit code 3"))

        // Retried on its own, with a back-off: more runs while nobody asks.
        try await Task.sleep(for: .seconds(2))
        #expect(Self.runs(dir) >= 2)

        // The user logs in again: the next retry (or a request after the back-off) gets the credential.
        try "".write(toFile: dir.appendingPathComponent("logged-in").path, atomically: true, encoding: .utf8)
        var code = ""
        for _ in 0..<120 where code != "200" {
            code = try await Self.code("\(proxy.baseURL)/api/v1/namespaces")
            if code != "200" { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(code == "200")
        var readyCode = ""
        for _ in 0..<80 where readyCode != "200" {
            readyCode = try await Self.code("\(health)/readyz")
            if readyCode != "200" { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(readyCode == "200")
        #expect(!proxy.child.stderr.contains("standin-token"))
        await proxy.stop()
        try? await standIn.stop()
    }

    @Test func interactiveAlwaysIsRefusedWithAnExplanation() async throws {
        let standIn = try await StandIn.start(StandInConfiguration())
        let dir = try TempDirectory.make()
        try standIn.writeState(to: dir.path)
        let plugin = try Self.writePlugin(in: dir, tokenCommand: "echo never-used")
        let kubeconfig = try Self.kubeconfig(standIn, dir: dir, command: plugin, interactiveMode: "Always")
        let child = try ChildProcess(
            executable: BuildProducts.proxyd, arguments: ["--port=0", "--kubeconfig", kubeconfig])
        #expect(try await child.waitForExit() == 1)
        #expect(child.stderr.contains("exec plugin cannot support interactive mode: standard input is not a terminal"))
        #expect(child.stderr.contains("proxyd is a daemon"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("runs").path))  // never ran
        try? await standIn.stop()
    }
}
