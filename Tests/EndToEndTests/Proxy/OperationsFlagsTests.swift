import Foundation
import StandInServer
import Testing

/// kubectl's global flags proxyd used to reject, and `--logging-format`.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct OperationsFlagsTests {
    static let slowPath = "/standin/slow?delayMs=800&chunks=3"  // about 2.4 s in all

    /// kubectl proxy accepts --request-timeout but does not apply it to proxied requests (it sets the REST
    /// client's timeout, and the proxy uses only the transport): checked here against kubectl itself, then
    /// proxyd, which does the same.
    @Test func requestTimeoutIsAcceptedButNotAppliedLikeKubectlProxy() async throws {
        let h = try await Harness.start(proxyArguments: ["--request-timeout=1s"])
        let kubectl = try ChildProcess(
            executable: URL(fileURLWithPath: try #require(Tool.path("kubectl"))),
            arguments: ["proxy", "--port=0", "--request-timeout=1s",
                        "--kubeconfig", h.directory.appendingPathComponent("kubeconfig").path])
        let out = try await kubectl.waitForStdout(containing: "Starting to serve on ")
        let kubectlURL = "http://" + (out.split(separator: "\n").first ?? "").dropFirst("Starting to serve on ".count)
        for base in [kubectlURL, h.url] {
            let started = ContinuousClock.now
            let body = try await Tool.curl(["\(base)\(Self.slowPath)"]).text
            #expect(body.contains("chunk 3/3"), "\(base): \(body)")
            #expect(ContinuousClock.now - started > .seconds(2))
        }
        kubectl.terminate()
        _ = try? await kubectl.waitForExit()
        // kubectl's validation and message.
        let bad = try ChildProcess(executable: BuildProducts.proxyd, arguments: ["--request-timeout=soon"])
        #expect(try await bad.waitForExit() == 64)
        #expect(bad.stderr.contains("invalid timeout value. Timeout must be a single integer in seconds"))
        await h.stop()
    }

    @Test func asUserExtraBecomesImpersonationHeaders() async throws {
        let h = try await Harness.start(proxyArguments: [
            "--as=alice", "--as-user-extra=scopes=view", "--as-user-extra", "scopes=edit",
            "--as-user-extra=example.com/team=a=b",
        ])
        let echo = try jsonObject(try await Tool.curl(["\(h.url)/standin/echo/x"]).stdout)
        let headers = echo["headers"] as? [String: [String]] ?? [:]
        #expect(headers["impersonate-user"] == ["alice"])
        #expect(headers["impersonate-extra-scopes"] == ["view", "edit"])
        #expect(headers["impersonate-extra-example.com%2fteam"] == ["a=b"])
        let noUser = try ChildProcess(
            executable: BuildProducts.proxyd,
            arguments: ["--kubeconfig", h.directory.appendingPathComponent("kubeconfig").path, "--as-user-extra=k=v"])
        #expect(try await noUser.waitForExit() == 1)
        #expect(noUser.stderr.contains("--as-user-extra: requesting uid, groups or user-extra without impersonating a user (as)"))
        let malformed = try ChildProcess(
            executable: BuildProducts.proxyd,
            arguments: ["--kubeconfig", h.directory.appendingPathComponent("kubeconfig").path, "--as=a", "--as-user-extra=novalue"])
        #expect(try await malformed.waitForExit() == 1)
        #expect(malformed.stderr.contains("--as-user-extra: invalid value \"novalue\": want key=value"))
        await h.stop()
    }

    /// A kubectl proxy command line with the global flags that mean nothing for a proxy still starts proxyd.
    @Test func kubectlGlobalFlagsWithoutMeaningForAProxyAreAccepted() async throws {
        let h = try await Harness.start(proxyArguments: [
            "-n", "kube-system", "--cache-dir=/nonexistent", "--disable-compression", "--match-server-version=false",
            "--warnings-as-errors=true", "--log-flush-frequency=5s", "--vmodule=proxy*=4", "--profile=none",
            "--profile-output=/dev/null", "--kuberc=/nonexistent",
        ])
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        await h.stop()
        let profile = try ChildProcess(executable: BuildProducts.proxyd, arguments: ["--profile=cpu"])
        #expect(try await profile.waitForExit() == 64)
        #expect(profile.stderr.contains("proxyd writes no Go profiles"))
    }

    @Test func jsonLogsAreOneObjectPerLineAccessLogIncluded() async throws {
        let h = try await Harness.start(proxyArguments: ["--logging-format=json", "--access-log", "-v=3"])
        _ = try await Tool.curl(["-o", "/dev/null", "\(h.url)/api?probe=1"])
        _ = try await Tool.curl(["-o", "/dev/null", "-H", "Host: evil.example", "\(h.url)/api"])
        await h.stop()
        let lines = h.proxy.child.stderr.split(separator: "\n")
        #expect(lines.count >= 3)
        var access: [[String: Any]] = []
        for line in lines {
            let object = try jsonObject(Data(line.utf8))
            #expect(object["ts"] is Double && object["level"] is String && object["msg"] is String, "\(line)")
            if object["msg"] as? String == "request" { access.append(object) }
        }
        #expect(access.count == 2)
        #expect(access.first?["target"] as? String == "/api?probe=1")
        #expect(access.first?["status"] as? Int == 200)
        #expect(access.first?["method"] as? String == "GET")
        #expect(access.first?["duration_us"] is Int)
        #expect(access.last?["status"] as? Int == 403)
        #expect(lines.contains { $0.contains("\"msg\":\"Filter rejecting GET /api evil.example\"") })
        #expect(!h.proxy.child.stderr.contains("standin-token"))

        let bad = try ChildProcess(executable: BuildProducts.proxyd, arguments: ["--logging-format=yaml"])
        #expect(try await bad.waitForExit() == 64)
        #expect(bad.stderr.contains("invalid value \"yaml\" for --logging-format: want text or json"))
    }
}
