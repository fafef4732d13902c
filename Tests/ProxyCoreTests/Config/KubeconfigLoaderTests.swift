import Foundation
import Testing

@testable import ProxyCore

extension ConfigTests {
@Suite("Kubeconfig loading, merging and resolution")
struct KubeconfigLoaderTests {
    @Test func singleFileResolvesEverything() throws {
        let dir = try TempDir()
        let file = try dir.write(
            "config",
            Fixture.simple(
                clusterExtra: """
                        certificate-authority-data: \(Fixture.base64(Fixture.caPEM))
                        tls-server-name: api.internal
                        proxy-url: socks5://proxy.test:1080
                        disable-compression: true
                        extensions:
                        - name: client.authentication.k8s.io/exec
                          extension: {audience: x}
                        some-future-field: [1, 2]
                    """,
                userExtra: """
                        token: \(Fixture.token)
                        as: carol
                        as-uid: u-1
                        as-groups: [ops, dev]
                        as-user-extra:
                          reason: [debug]
                        client-certificate-data: \(Fixture.base64(Fixture.certPEM))
                        client-key-data: \(Fixture.base64(Fixture.keyPEM))
                        unknown-thing: {a: 1}
                    """))
        let target = try loadTarget(file)
        #expect(target.scheme == "https")
        #expect(target.host == "api.example.test")
        #expect(target.port == 6443)
        #expect(target.authority == "api.example.test:6443")
        #expect(target.basePath == "")
        #expect(target.sendsCredentials)
        #expect(target.tls.caPEM == Fixture.bytes(Fixture.caPEM))
        #expect(target.tls.clientCertificatePEM == Fixture.bytes(Fixture.certPEM))
        #expect(target.tls.clientKeyPEM == Fixture.bytes(Fixture.keyPEM))
        #expect(target.tls.serverName == "api.internal")
        #expect(target.tls.insecureSkipVerify == false)
        #expect(target.tls.alpn == ["h2", "http/1.1"])
        #expect(target.proxyURL == "socks5://proxy.test:1080")
        #expect(target.disableCompression)
        #expect(target.credentials.bearerToken == Fixture.token)
        #expect(target.credentials.tokenFile == nil)
        #expect(target.credentials.impersonateUser == "carol")
        #expect(target.credentials.impersonateUID == "u-1")
        #expect(target.credentials.impersonateGroups == ["ops", "dev"])
        #expect(target.credentials.impersonateExtra == ["reason": ["debug"]])
    }

    @Test func jsonKubeconfigIsAccepted() throws {
        let dir = try TempDir()
        let json = """
            {
            \t"apiVersion": "v1",
            \t"kind": "Config",
            \t"clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1", "insecure-skip-tls-verify": true}}],
            \t"users": [{"name": "u", "user": {"username": "admin", "password": "\(Fixture.password)"}}],
            \t"contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            \t"current-context": "x",
            \t"preferences": {}
            }
            """
        let target = try loadTarget(try dir.write("config.json", json))
        #expect(target.host == "10.0.0.1")
        #expect(target.port == 443)
        #expect(target.authority == "10.0.0.1")
        #expect(target.tls.insecureSkipVerify)
        #expect(target.credentials.username == "admin")
        #expect(target.credentials.password == Fixture.password)
    }

    @Test func kubeconfigMergeIsFirstWinsPerEntryAndPerScalar() throws {
        let dir = try TempDir()
        // A: user tok with a token, cluster shared, context ctx; no current-context.
        let a = try dir.write(
            "a/config",
            """
            clusters:
            - name: shared
              cluster: {server: "https://from-a.test"}
            users:
            - name: tok
              user: {token: \(Fixture.token)}
            contexts:
            - name: ctx
              context: {cluster: shared, user: tok}
            """)
        // B: same names with other values (and extra fields A left empty), plus current-context.
        let b = try dir.write(
            "b/config",
            """
            current-context: ctx
            clusters:
            - name: shared
              cluster: {server: "https://from-b.test", tls-server-name: b-name}
            - name: only-b
              cluster: {server: "https://only-b.test"}
            users:
            - name: tok
              user: {token: \(Fixture.otherToken), as: mallory}
            contexts:
            - name: ctx
              context: {cluster: only-b, user: tok}
            """)
        let environment = ["KUBECONFIG": "\(a):\(b)", "HOME": dir.path]
        let target = try loadTarget(nil, environment: environment)
        #expect(target.host == "from-a.test")
        #expect(target.tls.serverName == nil)  // B's field is not merged into A's entry
        #expect(target.credentials.bearerToken == Fixture.token)
        #expect(target.credentials.impersonateUser == nil)

        let files = try KubeconfigLoader.loadFiles(explicitPath: nil, environment: environment, currentDirectory: "/")
        #expect(files.config.currentContext == "ctx")
        #expect(files.config.currentContextOrigin == b)
        #expect(files.config.clusters["only-b"]?.origin == b)
        #expect(files.config.clusters["shared"]?.origin == a)
        #expect(files.config.files == [a, b])

        // Reversed order: B wins everything.
        let reversed = try loadTarget(nil, environment: ["KUBECONFIG": "\(b):\(a)"])
        #expect(reversed.host == "only-b.test")
        #expect(reversed.credentials.bearerToken == Fixture.otherToken)
        #expect(reversed.credentials.impersonateUser == "mallory")
    }

    @Test func currentContextComesFromTheFirstFileThatSetsIt() throws {
        let dir = try TempDir()
        let body = """
            clusters:
            - {name: one, cluster: {server: "https://one.test"}}
            - {name: two, cluster: {server: "https://two.test"}}
            contexts:
            - {name: one, context: {cluster: one}}
            - {name: two, context: {cluster: two}}
            """
        let first = try dir.write("1", "current-context: two\n" + body)
        let second = try dir.write("2", "current-context: one\n" + body)
        let empty = try dir.write("3", "current-context: \"\"\n")
        let target = try loadTarget(nil, environment: ["KUBECONFIG": "\(empty):\(first):\(second)"])
        #expect(target.host == "two.test")
    }

    @Test func kubeconfigListSkipsMissingEmptyAndDuplicateEntriesAndResolvesRelativeEntries() throws {
        let dir = try TempDir()
        let real = try dir.write("sub/real", Fixture.simple())
        let list = ":\(dir.path)/missing::sub/real:\(real):"
        let files = try KubeconfigLoader.loadFiles(
            explicitPath: nil, environment: ["KUBECONFIG": list], currentDirectory: dir.path)
        #expect(files.config.files == [real])
        #expect(files.lookedFor == ["\(dir.path)/missing (from KUBECONFIG)", "\(real) (from KUBECONFIG)"])
        let target = try loadTarget(nil, environment: ["KUBECONFIG": list], cwd: dir.path)
        #expect(target.host == "api.example.test")
    }

    @Test func explicitKubeconfigWinsOverKUBECONFIGAndHome() throws {
        let dir = try TempDir()
        let explicit = try dir.write("explicit", Fixture.simple(server: "https://explicit.test"))
        let env = try dir.write("env", Fixture.simple(server: "https://env.test"))
        try dir.write("home/.kube/config", Fixture.simple(server: "https://home.test"))
        let home = "\(dir.path)/home"
        #expect(try loadTarget(explicit, environment: ["KUBECONFIG": env, "HOME": home]).host == "explicit.test")
        #expect(try loadTarget(nil, environment: ["KUBECONFIG": env, "HOME": home]).host == "env.test")
        #expect(try loadTarget(nil, environment: ["HOME": home]).host == "home.test")
        // A relative --kubeconfig resolves against the working directory.
        #expect(try loadTarget("explicit", cwd: dir.path).host == "explicit.test")
    }

    @Test func relativePathsResolveAgainstTheDefiningFilesDirectory() throws {
        let dir = try TempDir()
        // File A (dir one/) defines the user with relative cert, key, tokenFile and an exec command elsewhere.
        try dir.write("one/certs/client.crt", Fixture.certPEM)
        try dir.write("one/certs/client.key", Fixture.keyPEM)
        let a = try dir.write(
            "one/config",
            """
            current-context: ctx
            users:
            - name: u
              user:
                client-certificate: certs/client.crt
                client-key: ./certs/../certs/client.key
            - name: tf
              user:
                tokenFile: token.txt
            - name: ex
              user:
                exec:
                  apiVersion: client.authentication.k8s.io/v1
                  command: ./bin/plugin.sh
                  args: [./not-resolved]
                  env: [{name: MODE, value: fast}]
                  interactiveMode: Never
                  provideClusterInfo: true
                  installHint: install it
            - name: bare
              user:
                exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: gke-gcloud-auth-plugin}
            contexts:
            - name: ctx
              context: {cluster: c, user: u}
            """)
        try dir.write("one/token.txt", "  \(Fixture.token)\n")
        // File B (dir two/) defines the cluster with a relative CA.
        try dir.write("two/ca.crt", Fixture.caPEM)
        let b = try dir.write(
            "two/config",
            """
            clusters:
            - name: c
              cluster: {server: "https://api.test", certificate-authority: ca.crt}
            """)
        let env = ["KUBECONFIG": "\(a):\(b)"]
        let target = try loadTarget(nil, environment: env)
        #expect(target.tls.caPEM == Fixture.bytes(Fixture.caPEM))
        #expect(target.tls.clientCertificatePEM == Fixture.bytes(Fixture.certPEM))
        #expect(target.tls.clientKeyPEM == Fixture.bytes(Fixture.keyPEM))

        let files = try KubeconfigLoader.loadFiles(explicitPath: nil, environment: env, currentDirectory: "/")
        #expect(files.config.clusters["c"]?.certificateAuthority == "\(dir.path)/two/ca.crt")
        #expect(files.config.users["u"]?.clientKey == "\(dir.path)/one/certs/client.key")

        let tokenFile = try loadTarget(nil, environment: env, selection: .init(user: "tf"))
        #expect(tokenFile.credentials.tokenFile == "\(dir.path)/one/token.txt")
        #expect(tokenFile.credentials.bearerToken == Fixture.token)  // trimmed

        let exec = try #require(try loadTarget(nil, environment: env, selection: .init(user: "ex")).credentials.exec)
        #expect(exec.command == "\(dir.path)/one/bin/plugin.sh")
        #expect(exec.args == ["./not-resolved"])
        #expect(exec.env == [ExecConfig.EnvVar(name: "MODE", value: "fast")])
        #expect(exec.interactiveMode == .never)
        #expect(exec.provideClusterInfo)
        #expect(exec.installHint == "install it")
        #expect(exec.apiVersion == "client.authentication.k8s.io/v1")

        let bare = try #require(try loadTarget(nil, environment: env, selection: .init(user: "bare")).credentials.exec)
        #expect(bare.command == "gke-gcloud-auth-plugin")
        #expect(bare.interactiveMode == .ifAvailable)  // v1beta1 default
    }

    @Test func dataFieldsAndFileFields() throws {
        let dir = try TempDir()
        try dir.write("ca.crt", Fixture.otherCAPEM)
        try dir.write("c.crt", Fixture.certPEM)
        try dir.write("c.key", Fixture.keyPEM)
        let byFile = try loadTarget(
            try dir.write(
                "files",
                Fixture.simple(
                    clusterExtra: "    certificate-authority: ca.crt",
                    userExtra: "    client-certificate: c.crt\n    client-key: c.key")))
        #expect(byFile.tls.caPEM == Fixture.bytes(Fixture.otherCAPEM))
        #expect(byFile.tls.clientCertificatePEM == Fixture.bytes(Fixture.certPEM))
        #expect(byFile.tls.clientKeyPEM == Fixture.bytes(Fixture.keyPEM))
        #expect(byFile.credentials.isEmpty)

        // Mixed: certificate as data, key as file; base64 wrapped over lines is accepted.
        let wrapped = Fixture.base64(Fixture.certPEM).enumerated().map { $0.offset % 20 == 19 ? "\($0.element)\n      " : "\($0.element)" }.joined()
        let mixed = try loadTarget(
            try dir.write(
                "mixed",
                Fixture.simple(userExtra: "    client-certificate-data: |\n      \(wrapped)\n    client-key: c.key")))
        #expect(mixed.tls.clientCertificatePEM == Fixture.bytes(Fixture.certPEM))
        #expect(mixed.tls.clientKeyPEM == Fixture.bytes(Fixture.keyPEM))
    }

    @Test func noCAMeansSystemRoots() throws {
        let dir = try TempDir()
        let target = try loadTarget(try dir.write("config", Fixture.simple(clusterExtra: "")))
        #expect(target.tls.caPEM == nil)
    }

    @Test func execIsIgnoredWhenOtherCredentialsExist() throws {
        let dir = try TempDir()
        let exec = """
                exec: {apiVersion: client.authentication.k8s.io/v1, command: plug, interactiveMode: Never}
            """
        let withToken = try loadTarget(
            try dir.write("a", Fixture.simple(userExtra: "    token: \(Fixture.token)\n" + exec)))
        #expect(withToken.credentials.exec == nil)
        #expect(withToken.credentials.bearerToken == Fixture.token)
        let alone = try loadTarget(try dir.write("b", Fixture.simple(userExtra: exec)))
        #expect(alone.credentials.exec?.command == "plug")
    }

    @Test func authProviderIsParsed() throws {
        let dir = try TempDir()
        let target = try loadTarget(
            try dir.write(
                "a",
                Fixture.simple(
                    userExtra: """
                            auth-provider:
                              name: oidc
                              config: {id-token: \(Fixture.token), client-id: kube}
                        """)))
        #expect(target.credentials.authProvider == "oidc")
        #expect(target.credentials.authProviderConfig == ["id-token": Fixture.token, "client-id": "kube"])
        #expect(!target.description.contains(Fixture.token))
    }

    @Test func contextWithoutUserIsAnonymous() throws {
        let dir = try TempDir()
        let file = try dir.write(
            "a",
            """
            current-context: x
            clusters: [{name: c, cluster: {server: "https://h.test"}}]
            users: null
            contexts: [{name: x, context: {cluster: c}}]
            """)
        let target = try loadTarget(file)
        #expect(target.credentials == StaticCredentials())
        #expect(target.tls.clientCertificatePEM == nil)
    }

    @Test func httpServerNeverCarriesCredentials() throws {
        let dir = try TempDir()
        try dir.write("c.crt", Fixture.certPEM)
        try dir.write("c.key", Fixture.keyPEM)
        let file = try dir.write(
            "a",
            Fixture.simple(
                server: "http://127.0.0.1:8080", clusterExtra: "",
                userExtra: """
                        token: \(Fixture.token)
                        client-certificate: c.crt
                        client-key: c.key
                        as: bob
                    """))
        let target = try loadTarget(file)
        #expect(target.scheme == "http")
        #expect(target.port == 8080)
        #expect(!target.sendsCredentials)
        #expect(target.credentials.bearerToken == nil)
        #expect(target.tls.clientCertificatePEM == nil)
        #expect(target.tls.clientKeyPEM == nil)
        #expect(target.credentials.impersonateUser == "bob")  // client-go sends impersonation over http too
        // Even with --token.
        let flagged = try loadTarget(file, overrides: .init(token: Fixture.otherToken))
        #expect(flagged.credentials.bearerToken == nil)
    }

    @Test func serverOverrideWorksWithoutAnyKubeconfig() throws {
        let dir = try TempDir()
        let target = try loadTarget(
            nil, environment: ["HOME": dir.path],
            overrides: .init(server: "https://[2001:db8::1]:8443/k8s/", token: Fixture.token))
        #expect(target.host == "2001:db8::1")
        #expect(target.authority == "[2001:db8::1]:8443")
        #expect(target.basePath == "/k8s")
        #expect(target.credentials.bearerToken == Fixture.token)
    }

    @Test(arguments: [
        ("https://[::1]:6443", "::1", UInt16(6443), "[::1]:6443", ""),
        ("https://[fd00::10]", "fd00::10", 443, "[fd00::10]", ""),
        ("https://k8s.test:8443/base/", "k8s.test", 8443, "k8s.test:8443", "/base"),
        ("https://k8s.test/a/b//?q=1#f", "k8s.test", 443, "k8s.test", "/a/b"),
        ("https://k8s.test/", "k8s.test", 443, "k8s.test", ""),
        ("HTTPS://K8S.test:443", "K8S.test", 443, "K8S.test:443", ""),
        ("http://localhost", "localhost", 80, "localhost", ""),
        ("localhost:8080", "localhost", 8080, "localhost:8080", ""),
    ])
    func serverURLs(server: String, host: String, port: UInt16, authority: String, basePath: String) throws {
        let dir = try TempDir()
        let target = try loadTarget(try dir.write("a", Fixture.simple(server: "\"\(server)\"", clusterExtra: "")))
        #expect(target.host == host)
        #expect(target.port == port)
        #expect(target.authority == authority)
        #expect(target.basePath == basePath)
    }

    @Test func schemelessServerDefaultsToHTTPSWhenTLSIsConfigured() throws {
        let dir = try TempDir()
        let plain = try loadTarget(try dir.write("a", Fixture.simple(server: "10.1.1.1:6443", clusterExtra: "")))
        #expect(plain.scheme == "http")
        let tls = try loadTarget(try dir.write("b", Fixture.simple(server: "10.1.1.1:6443")))
        #expect(tls.scheme == "https")
        #expect(tls.serverURL == "https://10.1.1.1:6443")
    }

    @Test func noConfigurationListsWhatWasLookedFor() throws {
        let dir = try TempDir()
        let home = expectConfigError { try loadTarget(nil, environment: ["HOME": dir.path]) }
        #expect(home?.kind == .noConfiguration)
        #expect(home?.lookedFor == ["\(dir.path)/.kube/config"])
        #expect(home?.description == "no kubeconfig found (looked for \(dir.path)/.kube/config)")

        let list = expectConfigError {
            try loadTarget(nil, environment: ["KUBECONFIG": "/nope/a:/nope/b", "HOME": dir.path])
        }
        #expect(list?.kind == .noConfiguration)
        #expect(list?.lookedFor == ["/nope/a (from KUBECONFIG)", "/nope/b (from KUBECONFIG)"])

        let noHome = expectConfigError { try loadTarget(nil, environment: [:]) }
        #expect(noHome?.kind == .noConfiguration)
        #expect(noHome?.description == "no kubeconfig found (looked for $HOME/.kube/config (HOME is not set))")

        // Files that exist but hold nothing: also "no configuration", so the caller can try in-cluster.
        let empty = try dir.write("empty", "")
        let emptyError = expectConfigError { try loadTarget(nil, environment: ["KUBECONFIG": empty]) }
        #expect(emptyError?.kind == .noConfiguration)
        #expect(emptyError?.description == "no clusters, users or contexts in \(empty)")
    }

    @Test func descriptionsRedactSecrets() throws {
        let dir = try TempDir()
        let target = try loadTarget(
            try dir.write(
                "a",
                Fixture.simple(
                    userExtra: """
                            username: admin
                            password: \(Fixture.password)
                            client-certificate-data: \(Fixture.base64(Fixture.certPEM))
                            client-key-data: \(Fixture.base64(Fixture.keyPEM))
                        """)),
            overrides: .init())
        let texts = [
            target.description, target.debugDescription, String(describing: target), String(reflecting: target),
            "\(target.credentials)", String(reflecting: target.credentials),
            String(describing: KubeconfigOverrides(token: Fixture.token, password: Fixture.password)),
        ]
        for text in texts {
            for secret in Fixture.secrets { #expect(!text.contains(secret), "\(text)") }
            #expect(!text.contains("PRIVATE KEY"))
        }
        #expect(target.description.contains("<redacted>"))

        // The parsed model redacts too, including exec env values and auth-provider config.
        let model = try dir.write(
            "model",
            Fixture.simple(
                userExtra: """
                        exec:
                          apiVersion: client.authentication.k8s.io/v1
                          command: plug
                          interactiveMode: Never
                          env: [{name: SECRET, value: \(Fixture.token)}]
                    """
            ).replacingOccurrences(
                of: "contexts:\n",
                with: "- name: oidc\n  user: {auth-provider: {name: oidc, config: {id-token: \(Fixture.otherToken)}}}\ncontexts:\n"))
        let config = try #require(try KubeconfigLoader.readFile(model, mustExist: true))
        #expect(config.users["oidc"]?.authProvider?.config["id-token"] == Fixture.otherToken)
        #expect(config.users["alice"]?.exec?.env.first?.value == Fixture.token)
        let execTarget = try loadTarget(model)
        for text in [String(describing: config), String(reflecting: config), "\(execTarget)"] {
            for secret in Fixture.secrets { #expect(!text.contains(secret), "\(text)") }
            #expect(text.contains("SECRET"))
        }
        #expect(redactingUserInfo("http://user:\(Fixture.password)@proxy:3128/x") == "http://<redacted>@proxy:3128/x")
    }
}
}
