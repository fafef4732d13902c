import Foundation
import Testing

@testable import ProxyCore

extension ConfigTests {
    /// Every error names the file and the key path, and never a secret value (checked by `expectConfigError`).
    @Suite("Kubeconfig errors")
    struct KubeconfigErrorTests {
        @Test func contextNotFoundByFlag() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple())
            let error = expectConfigError { try loadTarget(file, selection: .init(context: "prod")) }
            #expect(error?.kind == .notFound)
            #expect(error?.description == "kubeconfig \(file): --context: context \"prod\" not found")
        }

        @Test func currentContextPointsNowhere() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple().replacingOccurrences(of: "current-context: dev", with: "current-context: gone"))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.description == "kubeconfig \(file): current-context: context \"gone\" not found")
        }

        @Test func contextsClusterNotFoundNamesTheContextsFile() throws {
            let dir = try TempDir()
            let clusters = try dir.write("clusters", Fixture.simple().replacingOccurrences(of: "current-context: dev\n", with: ""))
            let contexts = try dir.write(
                "contexts",
                """
                current-context: dev
                contexts:
                - name: dev
                  context: {cluster: nope, user: alice}
                """)
            let error = expectConfigError { try loadTarget(nil, environment: ["KUBECONFIG": "\(contexts):\(clusters)"]) }
            #expect(error?.kind == .notFound)
            #expect(error?.description == "kubeconfig \(contexts): contexts[dev].context.cluster: cluster \"nope\" not found")
        }

        @Test func contextsUserNotFound() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple().replacingOccurrences(of: "user: alice", with: "user: bob"))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.description == "kubeconfig \(file): contexts[dev].context.user: user \"bob\" not found")
        }

        @Test func clusterAndUserFlagsNotFound() throws {
            let dir = try TempDir()
            let a = try dir.write("a", Fixture.simple())
            let b = try dir.write("b", "current-context: dev\n")
            let env = ["KUBECONFIG": "\(a):\(b)"]
            let cluster = expectConfigError { try loadTarget(nil, environment: env, selection: .init(cluster: "x")) }
            #expect(cluster?.description == "kubeconfig \(a):\(b): --cluster: cluster \"x\" not found")
            let user = expectConfigError { try loadTarget(nil, environment: env, selection: .init(user: "y")) }
            #expect(user?.description == "kubeconfig \(a):\(b): --user: user \"y\" not found")
        }

        @Test func noCurrentContextAndNoFlags() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple().replacingOccurrences(of: "current-context: dev\n", with: ""))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.kind == .invalidValue)
            #expect(error?.description == "kubeconfig \(file): current-context: not set, and none of --context, --cluster or --server given")
            // Any of the flags makes it usable.
            #expect(try loadTarget(file, selection: .init(context: "dev")).host == "api.example.test")
            #expect(try loadTarget(file, selection: .init(cluster: "c")).credentials.bearerToken == nil)
            #expect(try loadTarget(file, overrides: .init(server: "https://flag.test")).host == "flag.test")
        }

        @Test func contextWithoutCluster() throws {
            let dir = try TempDir()
            let file = try dir.write("config", "current-context: x\ncontexts: [{name: x, context: {user: u}}]\nusers: [{name: u, user: {}}]\n")
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.description == "kubeconfig \(file): contexts[x].context.cluster: missing")
        }

        @Test func invalidBase64() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple(userExtra: "    client-certificate-data: \(Fixture.base64(Fixture.certPEM))\n    client-key-data: \(Fixture.token)!!"))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.kind == .invalidValue)
            #expect(error?.description == "kubeconfig \(file): users[alice].user.client-key-data: not valid base64")
        }

        @Test func invalidBase64InAnUnusedStanzaStillFailsTheFileLikeClientGo() throws {
            let dir = try TempDir()
            let yaml = Fixture.simple().replacingOccurrences(
                of: "users:\n", with: "- name: other\n  cluster: {server: https://o, certificate-authority-data: '%%%'}\nusers:\n")
            let file = try dir.write("config", yaml)
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.description == "kubeconfig \(file): clusters[other].cluster.certificate-authority-data: not valid base64")
            // Unknown keys, at any level, are ignored.
            let unknown = try dir.write("unknown", Fixture.simple() + "\nclusters2: {x: [1]}\nfuture: true\n")
            #expect(try loadTarget(unknown).host == "api.example.test")
        }

        @Test func serverMissing() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple().replacingOccurrences(of: "    server: https://api.example.test:6443\n", with: ""))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.description == "kubeconfig \(file): clusters[c].cluster.server: missing")
        }

        @Test(arguments: [
            ("ftp://x", "unsupported scheme \"ftp\" (want https or http)"),
            ("https://", "missing host"),
            ("https://::1:6443", "IPv6 address must be enclosed in brackets"),
            ("https://[::1:6443", "missing \"]\" in IPv6 address"),
            ("https://h:99999", "invalid port"),
            ("https://h:0", "invalid port"),
            ("https://admin:pw@h", "must not contain user information"),
        ])
        func badServerURL(server: String, message: String) throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple(server: "'\(server)'"))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.description == "kubeconfig \(file): clusters[c].cluster.server: \(message)")
            #expect(error?.description.contains("pw") == false)
        }

        @Test func yamlSyntaxErrorHasLineAndColumnButNoContent() throws {
            let dir = try TempDir()
            let file = try dir.write(
                "config",
                """
                apiVersion: v1
                users:
                - name: u
                  user: token: \(Fixture.token)
                """)
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.kind == .syntax)
            #expect(error?.keyPath == "line 4, column 14")
            #expect(error?.description == "kubeconfig \(file): line 4, column 14: mapping values are not allowed in this context")

            let unterminated = try dir.write("u", "users:\n- name: u\n  user:\n    token: \"\(Fixture.token)\n")
            let second = expectConfigError { try loadTarget(unterminated) }
            #expect(second?.kind == .syntax)
            #expect(second?.description.hasPrefix("kubeconfig \(unterminated): line ") == true)
        }

        @Test func wrongTypes() throws {
            let dir = try TempDir()
            let cases: [(String, String)] = [
                (Fixture.simple(server: "[a, b]"), "clusters[c].cluster.server: expected a string"),
                (Fixture.simple(clusterExtra: "    insecure-skip-tls-verify: maybe"), "clusters[c].cluster.insecure-skip-tls-verify: expected true or false"),
                ("clusters: {c: {}}", "clusters: expected a list"),
                ("clusters:\n- cluster: {server: x}", "clusters[0].name: missing"),
                ("clusters:\n- {name: a}\n- {name: a}", "clusters[1]: duplicate name \"a\""),
                ("users:\n- name: u\n  user: [\(Fixture.token)]", "users[u].user: expected a mapping"),
                ("users:\n- name: u\n  user: {as-groups: \(Fixture.token)}", "users[u].user.as-groups: expected a list of strings"),
                ("- just\n- a list", "expected a mapping at the top level"),
            ]
            for (index, (yaml, expected)) in cases.enumerated() {
                let file = try dir.write("c\(index)", yaml)
                let error = expectConfigError { try loadTarget(file, overrides: .init(server: "https://x")) }
                #expect(error?.description == "kubeconfig \(file): \(expected)")
            }
        }

        @Test func caFileUnreadable() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple(clusterExtra: "    certificate-authority: ca.crt"))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.kind == .unreadableFile)
            #expect(error?.description == "kubeconfig \(file): clusters[c].cluster.certificate-authority: cannot read \(dir.path)/ca.crt: No such file or directory")

            _ = try dir.mkdir("cadir")
            let asDir = try dir.write("config2", Fixture.simple(clusterExtra: "    certificate-authority: cadir"))
            let dirError = expectConfigError { try loadTarget(asDir) }
            #expect(dirError?.description == "kubeconfig \(asDir): clusters[c].cluster.certificate-authority: cannot read \(dir.path)/cadir: Is a directory")

            try dir.write("notpem", "hello")
            let notPEM = try dir.write("config3", Fixture.simple(clusterExtra: "    certificate-authority: notpem"))
            #expect(expectConfigError { try loadTarget(notPEM) }?.description == "kubeconfig \(notPEM): clusters[c].cluster.certificate-authority: no PEM data found in \(dir.path)/notpem")
        }

        @Test func clientFilesUnreadable() throws {
            let dir = try TempDir()
            try dir.write("c.crt", Fixture.certPEM)
            let file = try dir.write("config", Fixture.simple(userExtra: "    client-certificate: c.crt\n    client-key: missing.key"))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.description == "kubeconfig \(file): users[alice].user.client-key: cannot read \(dir.path)/missing.key: No such file or directory")

        }

        /// A token file that cannot be read (yet) is not a configuration error: proxyd starts, and its credential
        /// store answers requests with a 503 until the file holds a token (CredentialStoreTests).
        @Test func unreadableTokenFileIsLeftToTheCredentialStore() throws {
            let dir = try TempDir()
            let missing = try dir.write("config2", Fixture.simple(userExtra: "    tokenFile: /nonexistent/token"))
            let target = try loadTarget(missing)
            #expect(target.credentials.tokenFile == "/nonexistent/token")
            #expect(target.credentials.bearerToken == nil)

            try dir.write("empty-token", " \n")
            let emptyToken = try dir.write("config3", Fixture.simple(userExtra: "    tokenFile: empty-token"))
            let empty = try loadTarget(emptyToken)
            #expect(empty.credentials.tokenFile == "\(dir.path)/empty-token")
            #expect(empty.credentials.bearerToken == nil)
        }

        @Test func caWithInsecureIsRejected() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple(clusterExtra: "    certificate-authority-data: \(Fixture.base64(Fixture.caPEM))\n    insecure-skip-tls-verify: true"))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.kind == .conflict)
            #expect(error?.description == "kubeconfig \(file): clusters[c].cluster.insecure-skip-tls-verify: specifying a root certificates file with the insecure flag is not allowed")
        }

        @Test func tokenAndBasicAuthAreRejected() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple(userExtra: "    token: \(Fixture.token)\n    username: u\n    password: \(Fixture.password)").replacingOccurrences(of: "alice", with: "tok"))
            let error = expectConfigError { try loadTarget(file) }
            #expect(error?.kind == .conflict)
            #expect(error?.description == "kubeconfig \(file): users[tok].user: more than one authentication method found for tok; found [token basicAuth], only one is allowed")
        }

        @Test func fileAndDataBothSetIsAnErrorLikeClientGo() throws {
            let dir = try TempDir()
            try dir.write("ca.crt", Fixture.caPEM)
            try dir.write("c.crt", Fixture.certPEM)
            try dir.write("c.key", Fixture.keyPEM)
            let ca = try dir.write("ca", Fixture.simple(clusterExtra: "    certificate-authority: ca.crt\n    certificate-authority-data: \(Fixture.base64(Fixture.caPEM))"))
            #expect(expectConfigError { try loadTarget(ca) }?.description == "kubeconfig \(ca): clusters[c].cluster.certificate-authority: certificate-authority and certificate-authority-data are both specified; only one is allowed")
            let cert = try dir.write("cert", Fixture.simple(userExtra: "    client-certificate: c.crt\n    client-certificate-data: \(Fixture.base64(Fixture.certPEM))\n    client-key: c.key"))
            #expect(expectConfigError { try loadTarget(cert) }?.description == "kubeconfig \(cert): users[alice].user.client-certificate: client-certificate and client-certificate-data are both specified; only one is allowed")
            let key = try dir.write("key", Fixture.simple(userExtra: "    client-certificate: c.crt\n    client-key-data: \(Fixture.base64(Fixture.keyPEM))\n    client-key: c.key"))
            let keyError = expectConfigError { try loadTarget(key) }
            #expect(keyError?.kind == .conflict)
            #expect(keyError?.description == "kubeconfig \(key): users[alice].user.client-key: client-key and client-key-data are both specified; only one is allowed")
        }

        @Test func certificateWithoutKey() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple(userExtra: "    client-certificate-data: \(Fixture.base64(Fixture.certPEM))"))
            #expect(expectConfigError { try loadTarget(file) }?.description == "kubeconfig \(file): users[alice].user.client-key: missing (client-certificate is set)")
            let notPEM = try dir.write("config2", Fixture.simple(userExtra: "    client-certificate-data: \(Fixture.base64(Fixture.certPEM))\n    client-key-data: \(Fixture.base64(Fixture.token))"))
            #expect(expectConfigError { try loadTarget(notPEM) }?.description == "kubeconfig \(notPEM): users[alice].user.client-key-data: no PEM data found")
        }

        @Test func execValidation() throws {
            let dir = try TempDir()
            let cases: [(String, String)] = [
                ("exec: {apiVersion: client.authentication.k8s.io/v1, interactiveMode: Never}", "users[alice].user.exec.command: missing"),
                ("exec: {command: x, interactiveMode: Never}", "users[alice].user.exec.apiVersion: missing"),
                ("exec: {apiVersion: client.authentication.k8s.io/v1, command: x}", "users[alice].user.exec.interactiveMode: missing (required for client.authentication.k8s.io/v1)"),
                ("exec: {apiVersion: client.authentication.k8s.io/v1, command: x, interactiveMode: Sometimes}", "users[alice].user.exec.interactiveMode: invalid value \"Sometimes\" (want Never, IfAvailable or Always)"),
                ("exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: x, env: [{value: \(Fixture.token)}]}", "users[alice].user.exec.env[0].name: missing"),
                ("exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: x}\n    auth-provider: {name: oidc}", "users[alice].user: auth-provider cannot be provided in combination with an exec plugin for alice"),
            ]
            for (index, (exec, expected)) in cases.enumerated() {
                let file = try dir.write("c\(index)", Fixture.simple(userExtra: "    " + exec))
                #expect(expectConfigError { try loadTarget(file) }?.description == "kubeconfig \(file): \(expected)")
            }
        }

        @Test func impersonationDetailsWithoutUser() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple(userExtra: "    as-groups: [ops]"))
            #expect(expectConfigError { try loadTarget(file) }?.description == "kubeconfig \(file): users[alice].user.as: requesting uid, groups or user-extra without impersonating a user (as)")
            let flags = try dir.write("config2", Fixture.simple())
            #expect(expectConfigError { try loadTarget(flags, overrides: .init(impersonateGroups: ["g"])) }?.description == "--as-group: requesting uid, groups or user-extra without impersonating a user (as)")
        }

        @Test func badProxyURL() throws {
            let dir = try TempDir()
            let file = try dir.write("config", Fixture.simple(clusterExtra: "    proxy-url: ftp://u:\(Fixture.password)@p"))
            #expect(expectConfigError { try loadTarget(file) }?.description == "kubeconfig \(file): clusters[c].cluster.proxy-url: unsupported scheme \"ftp\", must be http, https, or socks5")
        }

        @Test func explicitKubeconfigMustExist() throws {
            let dir = try TempDir()
            let error = expectConfigError { try loadTarget("\(dir.path)/absent") }
            #expect(error?.kind == .fileNotFound)
            #expect(error?.description == "kubeconfig \(dir.path)/absent: cannot read: No such file or directory")
            // Even when KUBECONFIG and HOME would have worked.
            let other = try dir.write("other", Fixture.simple())
            #expect(expectConfigError { try loadTarget("\(dir.path)/absent", environment: ["KUBECONFIG": other]) }?.kind == .fileNotFound)
        }

        @Test func unreadableKUBECONFIGEntryIsAnErrorNotSkipped() throws {
            let dir = try TempDir()
            let asDirectory = try dir.mkdir("isdir")
            let error = expectConfigError { try loadTarget(nil, environment: ["KUBECONFIG": asDirectory]) }
            #expect(error?.kind == .unreadableFile)
            #expect(error?.description == "kubeconfig \(asDirectory): cannot read: Is a directory")
        }
    }
}
