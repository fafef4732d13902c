import Foundation
import Synchronization
import Testing

@testable import ProxyCore

/// Exec credential plugins (KUBECTL-PROXY.md §2.4): decoding, environment, errors, and the store's refresh rules.
@Suite struct ExecPluginTests {
    /// Plugins are told the kubeconfig's `proxy-url` only, not a proxy taken from `HTTPS_PROXY` (client-go).
    @Test func clusterInfoCarriesOnlyTheKubeconfigProxy() {
        var target = UpstreamTarget(scheme: "https", host: "h", port: 6443, authority: "h:6443")
        target.environmentProxyURL = "http://env-proxy:3128"
        #expect(ExecClusterInfo(target: target).proxyURL == nil)
        #expect(target.effectiveProxyURL == "http://env-proxy:3128")
        target.proxyURL = "socks5://kube-proxy:1080"
        #expect(ExecClusterInfo(target: target).proxyURL == "socks5://kube-proxy:1080")
        #expect(target.effectiveProxyURL == "socks5://kube-proxy:1080")
    }

    static let v1 = "client.authentication.k8s.io/v1"
    static let v1beta1 = "client.authentication.k8s.io/v1beta1"

    static func config(
        _ command: String = "plugin", apiVersion: String = v1, env: [ExecConfig.EnvVar] = [],
        installHint: String? = nil, provideClusterInfo: Bool = false, mode: ExecConfig.InteractiveMode = .never
    ) -> ExecConfig {
        ExecConfig(
            apiVersion: apiVersion, command: command, args: ["get-token", "--x"], env: env, installHint: installHint,
            provideClusterInfo: provideClusterInfo, interactiveMode: mode)
    }

    static func decode(_ json: String, _ apiVersion: String = v1) throws(CredentialError) -> ExecCredentialResult {
        try ExecPlugin.decode(Array(json.utf8), apiVersion: apiVersion)
    }

    static func decodeError(_ json: String, _ apiVersion: String = v1) -> String? {
        do {
            _ = try decode(json, apiVersion)
            return nil
        } catch {
            return error.description
        }
    }

    // MARK: decoding

    @Test func decodesV1TokenWithExpiry() throws {
        let r = try Self.decode(
            #"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-1","expirationTimestamp":"2030-01-02T03:04:05Z"}}"#
        )
        #expect(r.token == "tok-1")
        #expect(r.clientCertificatePEM == nil)
        #expect(r.expiration == Date(timeIntervalSince1970: 1_893_553_445))
        #expect(!r.description.contains("tok-1"))
    }

    @Test func decodesV1beta1WithoutExpiry() throws {
        let r = try Self.decode(
            #"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{},"status":{"token":"b"}}"#,
            Self.v1beta1)
        #expect(r.token == "b")
        #expect(r.expiration == nil)
    }

    @Test func decodesCertificateAndKey() throws {
        let r = try Self.decode(
            #"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","clientKeyData":"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}}"#
        )
        #expect(r.token == nil)
        #expect(r.clientCertificatePEM.map { String(decoding: $0, as: UTF8.self).hasPrefix("-----BEGIN CERTIFICATE") } == true)
        #expect(r.clientKeyPEM != nil)
    }

    @Test(arguments: [
        (#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t"}}"#,
         "exec plugin is configured to use API version client.authentication.k8s.io/v1, plugin returned version client.authentication.k8s.io/v1beta1"),
        (#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"}"#,
         "exec plugin didn't return a status field"),
        (#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}"#,
         "exec plugin didn't return a token or cert/key pair"),
        (#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":""}}"#,
         "exec plugin didn't return a token or cert/key pair"),
        (#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientKeyData":"k"}}"#,
         "exec plugin returned only certificate or key, not both"),
        (#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"tomorrow"}}"#,
         #"decoding stdout: status.expirationTimestamp "tomorrow" is not an RFC 3339 time"#),
        (#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"2030-01-02 03:04:05Z"}}"#,
         #"decoding stdout: status.expirationTimestamp "2030-01-02 03:04:05Z" is not an RFC 3339 time"#),
        (#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":42}}"#,
         "decoding stdout: status.token is not a string"),
        (#"{"kind":"ExecCredential","status":{"token":"t"}}"#, "decoding stdout: Object 'apiVersion' is missing"),
        (#"{"apiVersion":"client.authentication.k8s.io/v1","status":{"token":"t"}}"#,
         "decoding stdout: Object 'Kind' is missing"),
        ("token: secret-value", "decoding stdout: invalid JSON"),
    ])
    func rejectsBadOutput(json: String, message: String) {
        #expect(Self.decodeError(json) == message)
    }

    @Test func errorsNeverQuoteTheSecret() {
        let message = Self.decodeError(
            #"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"s3cr3t-value"}}"#)
        #expect(message != nil)
        #expect(message?.contains("s3cr3t-value") == false)
    }

    @Test(arguments: [
        ("2026-11-25T14:55:08Z", 1_795_618_508.0),
        ("2026-11-25T14:55:08.250Z", 1_795_618_508.25),
        ("2026-11-25T15:55:08+01:00", 1_795_618_508.0),
        ("2026-11-25T09:25:08-05:30", 1_795_618_508.0),
        ("2024-02-29T00:00:00Z", 1_709_164_800.0),
    ])
    func parsesRFC3339(text: String, seconds: Double) {
        #expect(RFC3339.parse(text)?.timeIntervalSince1970 == seconds)
    }

    @Test(arguments: ["2026-11-25", "2026-11-25T14:55:08", "2026-13-01T00:00:00Z", "2023-02-29T00:00:00Z",
                      "2026-11-25T14:55:08.Z", "2026-11-25T14:55:08Zjunk", "2026-11-25t14:55:08z", ""])
    func rejectsNonRFC3339(text: String) {
        #expect(RFC3339.parse(text) == nil)
    }

    // MARK: input

    @Test func execInfoWithoutClusterInfo() throws {
        let plugin = try ExecPlugin(
            config: Self.config(provideClusterInfo: false), cluster: ExecClusterInfo(server: "https://k:6443"))
        #expect(
            plugin.execInfoJSON()
                == #"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#
        )
    }

    @Test func execInfoWithClusterInfo() throws {
        let cluster = ExecClusterInfo(
            server: "https://k.example:6443/base", tlsServerName: "k.internal", insecureSkipTLSVerify: false,
            certificateAuthorityData: Array("PEM".utf8), proxyURL: "http://proxy:3128", disableCompression: true)
        let plugin = try ExecPlugin(config: Self.config(apiVersion: Self.v1beta1, provideClusterInfo: true), cluster: cluster)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(plugin.execInfoJSON().utf8)) as? [String: Any])
        #expect(object["apiVersion"] as? String == Self.v1beta1)
        #expect(object["kind"] as? String == "ExecCredential")
        let spec = try #require(object["spec"] as? [String: Any])
        #expect(spec["interactive"] as? Bool == false)
        let c = try #require(spec["cluster"] as? [String: Any])
        #expect(c["server"] as? String == "https://k.example:6443/base")
        #expect(c["tls-server-name"] as? String == "k.internal")
        #expect(c["certificate-authority-data"] as? String == Data("PEM".utf8).base64EncodedString())
        #expect(c["proxy-url"] as? String == "http://proxy:3128")
        #expect(c["disable-compression"] as? Bool == true)
        #expect(c["insecure-skip-tls-verify"] == nil)
        #expect(object["status"] == nil)
    }

    @Test func environmentAddsConfiguredVariablesAndExecInfo() throws {
        let plugin = try ExecPlugin(
            config: Self.config(env: [.init(name: "REGION", value: "eu"), .init(name: "HOME", value: "/plugin-home")]),
            cluster: nil)
        let env = plugin.environment(base: ["PATH": "/bin", "HOME": "/root"])
        #expect(env["PATH"] == "/bin")
        #expect(env["REGION"] == "eu")
        #expect(env["HOME"] == "/plugin-home")  // the kubeconfig's entry wins, as in client-go (later entries win)
        #expect(env["KUBERNETES_EXEC_INFO"] == plugin.execInfoJSON())
    }

    // MARK: errors

    @Test func alwaysInteractiveIsRefusedWithAnExplanation() {
        #expect {
            _ = try ExecPlugin(config: Self.config(mode: .always), cluster: nil)
        } throws: { error in
            let text = (error as? CredentialError)?.description ?? ""
            return text.hasPrefix("exec plugin cannot support interactive mode: standard input is not a terminal")
                && text.contains("daemon") && text.contains("interactiveMode: Never or IfAvailable")
        }
    }

    @Test func unsupportedVersionIsRefused() {
        #expect {
            _ = try ExecPlugin(config: Self.config(apiVersion: "client.authentication.k8s.io/v1alpha1"), cluster: nil)
        } throws: { error in
            (error as? CredentialError)?.description
                == #"exec plugin: invalid apiVersion "client.authentication.k8s.io/v1alpha1""#
        }
    }

    @Test func missingCommandPrintsTheInstallHint() throws {
        let plugin = try ExecPlugin(
            config: Self.config("proxyd-test-no-such-plugin", installHint: "Install it: apt-get install example"),
            cluster: nil)
        #expect {
            _ = try plugin.run(environment: ["PATH": "/nonexistent-dir:/usr/bin"])
        } throws: { error in
            let text = (error as? CredentialError)?.description ?? ""
            return text.hasPrefix("exec: executable proxyd-test-no-such-plugin not found\n\nIt looks like you are trying to use a client-go credential plugin that is not installed.")
                && text.hasSuffix("\n\nInstall it: apt-get install example")
        }
    }

    @Test func nonZeroExitReportsTheCode() throws {
        let scratch = try CredentialStoreTests.Scratch()
        let script = try Self.script(scratch, "fail.sh", "echo 'plugin: cannot log in' >&2\nexit 3\n")
        let plugin = try ExecPlugin(config: Self.config(script), cluster: nil)
        #expect {
            _ = try plugin.run()
        } throws: { error in
            (error as? CredentialError)?.description == "exec: executable \(script) failed with exit code 3"
        }
    }

    @Test func runsThePluginWithArgumentsAndEnvironment() throws {
        let scratch = try CredentialStoreTests.Scratch()
        let script = try Self.script(
            scratch, "ok.sh",
            """
            printf '%s' "$*" > "\(scratch.path)/args"
            printf '%s' "$KUBERNETES_EXEC_INFO" > "\(scratch.path)/info"
            printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-%s"}}' "$REGION"

            """)
        let plugin = try ExecPlugin(config: Self.config(script, env: [.init(name: "REGION", value: "eu")]), cluster: nil)
        let result = try plugin.run()
        #expect(result.token == "tok-eu")
        #expect(try String(contentsOfFile: scratch.path + "/args", encoding: .utf8) == "get-token --x")
        #expect(try String(contentsOfFile: scratch.path + "/info", encoding: .utf8) == plugin.execInfoJSON())
    }

    static func script(_ scratch: CredentialStoreTests.Scratch, _ name: String, _ body: String) throws -> String {
        let path = try scratch.write(name, "#!/bin/sh\n" + body)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        return path
    }

    // MARK: the store's refresh rules

    final class FakePlugin: Sendable {
        let calls = Mutex(0)
        let fail = Mutex(false)
        let delay: Duration
        init(delay: Duration = .zero) { self.delay = delay }

        var runner: @Sendable () throws(CredentialError) -> ExecCredentialResult {
            { () throws(CredentialError) -> ExecCredentialResult in
                let n = self.calls.withLock { c in
                    c += 1
                    return c
                }
                if self.delay > .zero { Thread.sleep(forTimeInterval: Double(self.delay.components.attoseconds) / 1e18) }
                if self.fail.withLock({ $0 }) { throw CredentialError("exec: executable fake failed with exit code 1") }
                return ExecCredentialResult(token: "tok-\(n)")
            }
        }
    }

    static func waitAll(_ count: Int, _ start: (@escaping @Sendable () -> Void) -> Void) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let remaining = Mutex(count)
            for _ in 0..<count {
                start {
                    let left = remaining.withLock { r in
                        r -= 1
                        return r
                    }
                    if left == 0 { continuation.resume() }
                }
            }
        }
    }

    @Test func startupRunsThePluginOnce() throws {
        let fake = FakePlugin()
        let store = try CredentialStore(
            credentials: StaticCredentials(), sendCredentials: true, execRunner: fake.runner)
        #expect(fake.calls.withLock { $0 } == 1)
        #expect(store.current.authorization == "Bearer tok-1")
        #expect(store.current.pluginGeneration == 1)
        #expect(store.usesExecPlugin)
    }

    /// A plugin failing at start-up leaves the store without a credential (requests get a 503 saying why), then
    /// retries on a back-off schedule, not only when a request asks, and the first success installs the credential.
    @Test func startupFailureIsRetriedUntilThePluginWorks() async throws {
        let fake = FakePlugin()
        fake.fail.withLock { $0 = true }
        let counters = ServiceCounters()
        let store = try CredentialStore(
            credentials: StaticCredentials(), sendCredentials: true, execRunner: fake.runner, counters: counters,
            execBackoff: (initial: 0.2, maximum: 0.4))
        #expect(store.current.authorization == nil)
        #expect(store.current.unavailable == "getting credentials: exec: executable fake failed with exit code 1")
        #expect(store.failure == store.current.unavailable)
        // Within the first back-off a request's refresh does not run the plugin again.
        await Self.waitAll(1) { done in store.refresh(ifStillGeneration: 1, completion: done) }
        #expect(fake.calls.withLock { $0 } == 1)
        store.startWatching()
        defer { store.stopWatching() }
        try await Task.sleep(for: .milliseconds(700))
        #expect(fake.calls.withLock { $0 } >= 2)  // retried on its own
        fake.fail.withLock { $0 = false }
        var authorization: String?
        for _ in 0..<40 where authorization == nil {
            try await Task.sleep(for: .milliseconds(100))
            authorization = store.current.authorization
        }
        #expect(authorization?.hasPrefix("Bearer tok-") == true)
        #expect(store.current.unavailable == nil)
        #expect(store.failure == nil)
        let refreshes = counters.values.credentialRefreshes[CredentialSourceLabel.execPlugin.rawValue]
        #expect(refreshes[0] == 1)
        #expect(refreshes[1] == fake.calls.withLock { $0 } - 1)
    }

    @Test func concurrentRefreshesRunThePluginOnce() async throws {
        let fake = FakePlugin(delay: .milliseconds(200))
        let store = try CredentialStore(
            credentials: StaticCredentials(), sendCredentials: true, execRunner: fake.runner)
        await Self.waitAll(16) { done in
            DispatchQueue.global().async { store.refresh(ifStillGeneration: 1, completion: done) }
        }
        #expect(fake.calls.withLock { $0 } == 2)
        #expect(store.current.authorization == "Bearer tok-2")
        #expect(store.current.pluginGeneration == 2)
        // A late 401 for the old credential does not run the plugin again.
        await Self.waitAll(1) { done in store.refresh(ifStillGeneration: 1, completion: done) }
        #expect(fake.calls.withLock { $0 } == 2)
    }

    @Test func failedRefreshKeepsTheCredentialAndBacksOff() async throws {
        let fake = FakePlugin()
        let store = try CredentialStore(
            credentials: StaticCredentials(), sendCredentials: true, execRunner: fake.runner,
            execBackoff: (initial: 60, maximum: 60))
        fake.fail.withLock { $0 = true }
        await Self.waitAll(1) { done in store.refresh(ifStillGeneration: 1, completion: done) }
        #expect(fake.calls.withLock { $0 } == 2)
        #expect(store.current.authorization == "Bearer tok-1")
        // Within the back-off, more 401s do not run the plugin (no tight loop).
        fake.fail.withLock { $0 = false }
        for _ in 0..<3 {
            await Self.waitAll(1) { done in store.refresh(ifStillGeneration: 1, completion: done) }
        }
        #expect(fake.calls.withLock { $0 } == 2)
        #expect(store.current.authorization == "Bearer tok-1")
    }

    @Test func refreshRunsAgainAfterTheBackoff() async throws {
        let fake = FakePlugin()
        let store = try CredentialStore(
            credentials: StaticCredentials(), sendCredentials: true, execRunner: fake.runner,
            execBackoff: (initial: 0.2, maximum: 0.2))
        fake.fail.withLock { $0 = true }
        await Self.waitAll(1) { done in store.refresh(ifStillGeneration: 1, completion: done) }
        fake.fail.withLock { $0 = false }
        try await Task.sleep(for: .milliseconds(400))
        await Self.waitAll(1) { done in store.refresh(ifStillGeneration: 1, completion: done) }
        #expect(fake.calls.withLock { $0 } == 3)
        #expect(store.current.authorization == "Bearer tok-3")
        #expect(store.current.pluginGeneration == 2)
    }

    @Test func noPluginForPlainHTTP() throws {
        // The plugin would fail if it ran: it is not run at all for an http:// server (client-go).
        let store = try CredentialStore(
            credentials: StaticCredentials(exec: Self.config("proxyd-test-no-such-plugin")), sendCredentials: false)
        #expect(store.current.authorization == nil)
        #expect(!store.usesExecPlugin)
    }

    @Test(arguments: [
        (2.0, 1.6),  // short-lived: at 80 % of the life
        (3600.0, 3590.0),  // long-lived: 10 s before expiry
        (0.5, 1.0),  // never sooner than 1 s
        (-5.0, 1.0),  // already expired
    ])
    func refreshTiming(life: Double, delay: Double) {
        let now = Date(timeIntervalSince1970: 1_000_000)
        let computed = ExecRefresherTiming.refreshDelay(expiration: now.addingTimeInterval(life), now: now)
        #expect(abs(computed - delay) < 0.001)
    }
}
