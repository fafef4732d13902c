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
                return try writeKubeconfig(in: dir, server: standIn.url, user: "{tokenFile: token}")
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

    /// A kubeconfig for the stand-in (CA by file) whose user stanza is `user` (flow-style YAML).
    private static func kubeconfig(_ standIn: StandIn, _ dir: URL, user: String) throws -> String {
        try writeKubeconfig(in: dir, server: standIn.url, user: user)
    }

    @Test func basicAuthFromKubeconfigIsVerified() async throws {
        let h = try await Harness.start(
            standIn: { $0.basicAuthUsers = ["alice": "s3cret:pw"] },
            kubeconfig: { standIn, dir in try Self.kubeconfig(standIn, dir, user: #"{username: alice, password: "s3cret:pw"}"#) })
        let e = try await echo(h)
        #expect(e["authenticatedBy"] as? String == "basic:alice")
        await h.stop()
        // A wrong password is refused by the stand-in (401 relayed): it checks, not just accepts.
        let wrong = try await Harness.start(
            standIn: { $0.basicAuthUsers = ["alice": "s3cret:pw"] },
            kubeconfig: { standIn, dir in try Self.kubeconfig(standIn, dir, user: "{username: alice, password: nope}") })
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(wrong.url)/api"]).text == "401")
        #expect(!wrong.proxy.child.stderr.contains("nope"))
        await wrong.stop()
    }

    @Test func oidcAuthProviderSendsTheIdToken() async throws {
        let exp = Int(Date().timeIntervalSince1970) + 3600
        let idToken = Self.unsignedJWT(#"{"sub":"alice","exp":\#(exp)}"#)
        let h = try await Harness.start(
            standIn: { $0.tokens = [idToken] },
            kubeconfig: { standIn, dir in
                try Self.kubeconfig(standIn, dir, user: """
                    {auth-provider: {name: oidc, config: {client-id: k, idp-issuer-url: "https://127.0.0.1:1", id-token: "\(idToken)", refresh-token: r-secret}}}
                    """)
            })
        let e = try await echo(h)
        #expect(e["authenticatedBy"] as? String == "token")
        #expect(h.proxy.child.stderr.contains("oidc id-token expires at"))
        #expect(!h.proxy.child.stderr.contains(idToken) && !h.proxy.child.stderr.contains("r-secret"))
        await h.stop()
    }

    @Test func expiredOidcTokenAndRemovedProvidersFailAtStartup() async throws {
        let standIn = try await StandIn.start(StandInConfiguration())
        let dir = try TempDirectory.make()
        try standIn.writeState(to: dir.path)
        let expired = Self.unsignedJWT(#"{"sub":"alice","exp":1600000000}"#)
        let cases: [(String, String)] = [
            ("{auth-provider: {name: oidc, config: {id-token: \"\(expired)\"}}}", "id-token expired at 2020-09-13T12:26:40Z"),
            ("{auth-provider: {name: gcp, config: {access-token: gcp-secret}}}", "gke-gcloud-auth-plugin"),
        ]
        for (user, expected) in cases {
            let path = try Self.kubeconfig(standIn, dir, user: user)
            let child = try ChildProcess(executable: BuildProducts.proxyd, arguments: ["--port=0", "--kubeconfig", path])
            #expect(try await child.waitForExit() == 1)
            #expect(child.stderr.contains(expected), "\(child.stderr)")
            #expect(!child.stderr.contains(expired) && !child.stderr.contains("gcp-secret"))
        }
        try? await standIn.stop()
        try? FileManager.default.removeItem(at: dir)
    }

    private static func unsignedJWT(_ payload: String) -> String {
        func b64url(_ s: String) -> String {
            Data(s.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        return b64url(#"{"alg":"RS256"}"#) + "." + b64url(payload) + ".c2ln"
    }

    /// Client certificate files replaced while proxyd runs: new requests present the new identity (the stand-in
    /// reports the certificate's CN), and a watch on a connection made with the old identity keeps streaming.
    @Test func clientCertificateFileRotationDrainsOldConnections() async throws {
        let h = try await Harness.start(
            proxyArguments: ["--loops=1"],
            kubeconfig: { standIn, dir in
                try Self.kubeconfig(standIn, dir, user: "{client-certificate: client.crt, client-key: client.key}")
            })
        #expect(try await echo(h)["clientCertificateCN"] as? String == "standin-client")
        try h.standIn.createPod(name: "before")
        let watch = try RawClient(port: h.proxy.port)
        watch.send("GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(watch.read(until: "\"before\"").hasPrefix("HTTP/1.1 200"))
        #expect(h.standIn.stats.h2Connections == 1)

        // Rotate as a tool would: the key first, then the certificate (a mismatched pair in between is not used).
        let (certificate, key) = try h.standIn.issueClientCertificate(commonName: "rotated-client")
        try key.write(to: h.directory.appendingPathComponent("client.key"), atomically: true, encoding: .utf8)
        try await Task.sleep(for: .seconds(6))  // one poll sees the half-written pair
        #expect(try await echo(h)["clientCertificateCN"] as? String == "standin-client")
        try certificate.write(to: h.directory.appendingPathComponent("client.crt"), atomically: true, encoding: .utf8)
        var cn: String?
        for _ in 0..<60 {
            cn = try await echo(h)["clientCertificateCN"] as? String
            if cn == "rotated-client" { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(cn == "rotated-client")
        #expect(h.standIn.stats.h2Connections == 2)
        #expect(h.proxy.child.stderr.contains("cannot be used yet"))
        // The watch made with the old identity still streams.
        try h.standIn.createPod(name: "after")
        #expect(watch.read(until: "\"after\"").contains("\"after\""))
        watch.close()
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
