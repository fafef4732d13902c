import Foundation
import StandInServer
import Testing

/// Credential kinds end to end: the stand-in verifies them (it accepts only its tokens or its client certificate).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct CredentialTests {
    private func echo(_ h: Harness, _ extra: [String] = []) async throws -> [String: Any] {
        try jsonObject(try await Tool.curl(extra + ["\(h.url)/standin/echo/c"]).stdout)
    }

    @Test func clientCertificateFromKubeconfig() async throws {
        let h = try await Harness.start(kubeconfig: { _, dir in dir.appendingPathComponent("kubeconfig-cert").path })
        let e = try await echo(h)
        #expect(e["authenticatedBy"] as? String == "certificate")
        #expect(e["clientCertificateCN"] as? String == "standin-client")
        let headers = e["headers"] as? [String: Any]
        #expect(headers?["authorization"] == nil)
        await h.stop()
    }

    @Test func tokenFileRotationNeedsNoRestart() async throws {
        let h = try await Harness.start(
            standIn: { $0.tokens = ["first-token"] },
            kubeconfig: { standIn, dir in
                let tokenFile = dir.appendingPathComponent("token")
                try "first-token\n".write(to: tokenFile, atomically: true, encoding: .utf8)
                let path = dir.appendingPathComponent("kubeconfig-tokenfile").path
                try """
                    apiVersion: v1
                    kind: Config
                    clusters:
                    - name: s
                      cluster: {server: "\(standIn.url)", certificate-authority: ca.crt}
                    users:
                    - name: u
                      user: {tokenFile: token}
                    contexts:
                    - name: x
                      context: {cluster: s, user: u}
                    current-context: x
                    """.write(toFile: path, atomically: true, encoding: .utf8)
                return path
            })
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "200")
        // Rotate: the apiserver now only accepts the new token, and the file holds it.
        h.standIn.setTokens(["second-token"])
        try "second-token".write(to: h.directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        var code = ""
        for _ in 0..<40 {
            code = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text
            if code == "200" { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(code == "200")
        #expect(!h.proxy.child.stderr.contains("second-token"))
        await h.stop()
    }

    @Test func impersonationFlagsBecomeHeadersAndClientHeadersWin() async throws {
        let h = try await Harness.start(proxyArguments: ["--as=alice", "--as-group=dev", "--as-group=ops"])
        let e = try await echo(h)
        let headers = e["headers"] as? [String: [String]] ?? [:]
        #expect(headers["impersonate-user"] == ["alice"])
        #expect(headers["impersonate-group"] == ["dev", "ops"])
        // A client's own Impersonate-User replaces the configured impersonation entirely (kubectl).
        let own = try await echo(h, ["-H", "Impersonate-User: bob"])
        let ownHeaders = own["headers"] as? [String: [String]] ?? [:]
        #expect(ownHeaders["impersonate-user"] == ["bob"])
        #expect(ownHeaders["impersonate-group"] == nil)
        // A client's own Authorization is forwarded instead of the kubeconfig's token.
        let code = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer not-valid", "\(h.url)/api"])
        #expect(code.text == "401")
        await h.stop()
    }

    @Test func inClusterServiceAccountWhenNoKubeconfig() async throws {
        let standIn = try await StandIn.start(StandInConfiguration())
        let sa = try TempDirectory.make()
        try standIn.caPEM.write(to: sa.appendingPathComponent("ca.crt"), atomically: true, encoding: .utf8)
        try "standin-token".write(to: sa.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        let home = try TempDirectory.make()  // no ~/.kube/config there
        let proxy = try await RunningProxy.start(
            arguments: ["--port=0"],
            environment: [
                "HOME": home.path, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": String(standIn.port), "PROXYD_SERVICE_ACCOUNT_DIR": sa.path,
            ])
        let e = try jsonObject(try await Tool.curl(["\(proxy.baseURL)/standin/echo/sa"]).stdout)
        #expect(e["authenticatedBy"] as? String == "token")
        await proxy.stop()
        // Flags apply on top of the service account (client-go): --server and --as keep its token and CA.
        let withFlags = try await RunningProxy.start(
            arguments: ["--port=0", "--as=alice", "--server=https://localhost:\(standIn.port)"],
            environment: [
                "HOME": home.path, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": String(standIn.port), "PROXYD_SERVICE_ACCOUNT_DIR": sa.path,
            ])
        let f = try jsonObject(try await Tool.curl(["\(withFlags.baseURL)/standin/echo/sa"]).stdout)
        #expect(f["authenticatedBy"] as? String == "token")
        #expect((f["headers"] as? [String: [String]])?["impersonate-user"] == ["alice"])
        await withFlags.stop()
        try? await standIn.stop()
    }

    @Test func noConfigurationAtAllIsAnError() async throws {
        let home = try TempDirectory.make()
        let child = try ChildProcess(executable: BuildProducts.proxyd, arguments: ["--port=0"], environment: ["HOME": home.path])
        #expect(try await child.waitForExit() == 1)
        #expect(child.stderr.contains("no kubeconfig found"))
        #expect(child.stderr.contains("KUBERNETES_SERVICE_HOST"))
    }
}
