import Foundation
import Testing

@testable import ProxyCore

extension ConfigTests {
    /// Precedence of the kubectl flags over the kubeconfig (client-go `DirectClientConfig` semantics).
    @Suite("Kubeconfig flag precedence")
    struct KubeconfigOverridesTests {
        let dir: TempDir
        let file: String

        init() throws {
            dir = try TempDir()
            try dir.write("cwd/flag-ca.crt", Fixture.otherCAPEM)
            try dir.write("cwd/flag.crt", Fixture.certPEM)
            try dir.write("cwd/flag.key", Fixture.keyPEM)
            try dir.write("token", Fixture.otherToken)
            file = try dir.write(
                "config",
                """
                current-context: dev
                clusters:
                - name: c
                  cluster:
                    server: https://file.test:6443
                    certificate-authority-data: \(Fixture.base64(Fixture.caPEM))
                    tls-server-name: file-name
                - name: c2
                  cluster: {server: "https://c2.test", insecure-skip-tls-verify: true}
                users:
                - name: alice
                  user: {token: \(Fixture.token), as: carol, as-groups: [a, b], as-uid: u-file}
                - name: bob
                  user: {username: bob, password: \(Fixture.password)}
                - name: carl
                  user:
                    exec: {apiVersion: client.authentication.k8s.io/v1, command: plug, interactiveMode: Never}
                - name: dave
                  user:
                    tokenFile: token
                    client-certificate-data: \(Fixture.base64(Fixture.certPEM))
                    client-key-data: \(Fixture.base64(Fixture.keyPEM))
                contexts:
                - name: dev
                  context: {cluster: c, user: alice}
                - name: ops
                  context: {cluster: c2, user: bob}
                """)
        }

        func load(_ selection: KubeconfigSelection = .init(), _ overrides: KubeconfigOverrides = .init())
            throws(ConfigError) -> UpstreamTarget
        {
            try loadTarget(file, selection: selection, overrides: overrides, cwd: "\(dir.path)/cwd")
        }

        @Test func selectionFlags() throws {
            let dev = try load()
            #expect(dev.host == "file.test")
            #expect(dev.credentials.bearerToken == Fixture.token)
            let ops = try load(.init(context: "ops"))
            #expect(ops.host == "c2.test")
            #expect(ops.credentials.username == "bob")
            let mixed = try load(.init(cluster: "c2", user: "carl"))
            #expect(mixed.host == "c2.test")
            #expect(mixed.tls.insecureSkipVerify)
            #expect(mixed.credentials.exec?.command == "plug")
            let contextAndUser = try load(.init(context: "ops", user: "alice"))
            #expect(contextAndUser.host == "c2.test")
            #expect(contextAndUser.credentials.bearerToken == Fixture.token)
        }

        @Test func serverFlagReplacesServerAndTLSServerName() throws {
            let target = try load(.init(), .init(server: "https://flag.test:7443/p"))
            #expect(target.authority == "flag.test:7443")
            #expect(target.basePath == "/p")
            #expect(target.tls.serverName == nil)  // cleared, like client-go
            #expect(target.tls.caPEM == Fixture.bytes(Fixture.caPEM))  // CA kept
            let named = try load(.init(), .init(server: "https://flag.test", tlsServerName: "flag-name"))
            #expect(named.tls.serverName == "flag-name")
            let nameOnly = try load(.init(), .init(tlsServerName: "only-name"))
            #expect(nameOnly.host == "file.test")
            #expect(nameOnly.tls.serverName == "only-name")
        }

        @Test func insecureFlagClearsTheCA() throws {
            let insecure = try load(.init(), .init(insecureSkipTLSVerify: true))
            #expect(insecure.tls.insecureSkipVerify)
            #expect(insecure.tls.caPEM == nil)
            // --insecure-skip-tls-verify=false changes nothing (kubectl ignores a false override).
            let notInsecure = try load(.init(context: "ops"), .init(insecureSkipTLSVerify: false))
            #expect(notInsecure.tls.insecureSkipVerify)
        }

        @Test func caFlagReplacesCADataAndInsecure() throws {
            let fromFile = try load(.init(), .init(certificateAuthority: "flag-ca.crt"))
            #expect(fromFile.tls.caPEM == Fixture.bytes(Fixture.otherCAPEM))
            let onInsecureCluster = try load(.init(context: "ops"), .init(certificateAuthority: "flag-ca.crt"))
            #expect(onInsecureCluster.tls.insecureSkipVerify == false)
            #expect(onInsecureCluster.tls.caPEM == Fixture.bytes(Fixture.otherCAPEM))
            // Both flags together: the insecure/CA conflict, reported against the flag.
            let both = expectConfigError {
                try load(.init(), .init(certificateAuthority: "flag-ca.crt", insecureSkipTLSVerify: true))
            }
            #expect(both?.description == "--insecure-skip-tls-verify: specifying a root certificates file with the insecure flag is not allowed")
            let missing = expectConfigError { try load(.init(), .init(certificateAuthority: "nope.crt")) }
            #expect(missing?.description == "--certificate-authority: cannot read \(dir.path)/cwd/nope.crt: No such file or directory")
        }

        @Test func tokenFlagReplacesOtherAuthentication() throws {
            let overBasic = try load(.init(context: "ops"), .init(token: Fixture.otherToken))
            #expect(overBasic.credentials.bearerToken == Fixture.otherToken)
            #expect(overBasic.credentials.username == nil)
            #expect(overBasic.credentials.password == nil)
            let overExec = try load(.init(user: "carl"), .init(token: Fixture.otherToken))
            #expect(overExec.credentials.exec == nil)
            let overTokenFile = try load(.init(user: "dave"), .init(token: Fixture.otherToken))
            #expect(overTokenFile.credentials.tokenFile == nil)
            #expect(overTokenFile.credentials.bearerToken == Fixture.otherToken)
            #expect(overTokenFile.tls.clientCertificatePEM == Fixture.bytes(Fixture.certPEM))  // certificate stays
            let overToken = try load(.init(), .init(token: Fixture.otherToken))
            #expect(overToken.credentials.bearerToken == Fixture.otherToken)
            #expect(overToken.credentials.impersonateUser == "carol")  // impersonation untouched
        }

        @Test func basicAuthFlagsReplaceToken() throws {
            let target = try load(.init(), .init(username: "root", password: Fixture.password))
            #expect(target.credentials.bearerToken == nil)
            #expect(target.credentials.username == "root")
            #expect(target.credentials.password == Fixture.password)
            let usernameOnly = try load(.init(context: "ops"), .init(username: "other"))
            #expect(usernameOnly.credentials.username == "other")
            #expect(usernameOnly.credentials.password == Fixture.password)  // file's password kept
        }

        @Test func tokenAndBasicAuthFlagsTogetherAreRejected() throws {
            let error = expectConfigError {
                try load(.init(), .init(token: Fixture.otherToken, username: "u", password: Fixture.password))
            }
            #expect(error?.kind == .conflict)
            #expect(error?.description == "--token: more than one authentication method found for alice; found [token basicAuth], only one is allowed")
        }

        @Test func clientCertificateFlagsReplaceDataAndResolveAgainstCwd() throws {
            let target = try load(.init(user: "dave"), .init(clientCertificate: "flag.crt", clientKey: "./flag.key"))
            #expect(target.tls.clientCertificatePEM == Fixture.bytes(Fixture.certPEM))
            #expect(target.tls.clientKeyPEM == Fixture.bytes(Fixture.keyPEM))
            // dave's tokenFile (relative to the kubeconfig's dir) still applies.
            #expect(target.credentials.tokenFile == "\(dir.path)/token")
            #expect(target.credentials.bearerToken == Fixture.otherToken)
            let missing = expectConfigError { try load(.init(user: "dave"), .init(clientKey: "gone.key")) }
            #expect(missing?.description == "--client-key: cannot read \(dir.path)/cwd/gone.key: No such file or directory")
            let absolute = try load(.init(), .init(clientCertificate: "\(dir.path)/cwd/flag.crt", clientKey: "\(dir.path)/cwd/flag.key"))
            #expect(absolute.tls.clientKeyPEM == Fixture.bytes(Fixture.keyPEM))
        }

        @Test func impersonationFlags() throws {
            let target = try load(.init(), .init(impersonateUser: "bob", impersonateGroups: ["g1", "g2"], impersonateUID: "u-1"))
            #expect(target.credentials.impersonateUser == "bob")
            #expect(target.credentials.impersonateGroups == ["g1", "g2"])
            #expect(target.credentials.impersonateUID == "u-1")
            let userOnly = try load(.init(), .init(impersonateUser: "eve"))
            #expect(userOnly.credentials.impersonateUser == "eve")
            #expect(userOnly.credentials.impersonateGroups == ["a", "b"])  // from the file
            #expect(userOnly.credentials.impersonateUID == "u-file")
        }

        @Test func emptyStringFlagsCountAsNotGiven() throws {
            let target = try load(.init(context: "", cluster: "", user: ""), .init(server: "", token: "", tlsServerName: ""))
            #expect(target == (try load()))
        }
    }
}
