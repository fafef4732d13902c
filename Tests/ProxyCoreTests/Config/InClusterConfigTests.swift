import Foundation
import Testing

@testable import ProxyCore

extension ConfigTests {
    @Suite("In-cluster configuration")
    struct InClusterConfigTests {
        let dir: TempDir
        let token: String
        let ca: String

        init() throws {
            dir = try TempDir()
            token = try dir.write("sa/token", "\(Fixture.token)\n")
            ca = try dir.write("sa/ca.crt", Fixture.caPEM)
        }

        @Test func loadsServiceAccount() throws {
            let env = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
            #expect(InClusterConfig.isPossible(environment: env, tokenPath: token))
            let target = try InClusterConfig.load(environment: env, tokenPath: token, caPath: ca)
            #expect(target.scheme == "https")
            #expect(target.host == "10.96.0.1")
            #expect(target.port == 443)
            #expect(target.authority == "10.96.0.1:443")
            #expect(target.basePath == "")
            #expect(target.tls.caPEM == Fixture.bytes(Fixture.caPEM))
            #expect(target.credentials.tokenFile == token)
            #expect(target.credentials.bearerToken == Fixture.token)
            #expect(!target.description.contains(Fixture.token))
        }

        @Test func ipv6HostIsBracketed() throws {
            let env = ["KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "6443"]
            let target = try InClusterConfig.load(environment: env, tokenPath: token, caPath: ca)
            #expect(target.host == "fd00:10:96::1")
            #expect(target.port == 6443)
            #expect(target.authority == "[fd00:10:96::1]:6443")
        }

        @Test func missingEnvironmentOrToken() throws {
            #expect(!InClusterConfig.isPossible(environment: [:], tokenPath: token))
            let noEnv = expectConfigError { try InClusterConfig.load(environment: ["KUBERNETES_SERVICE_HOST": "h"], tokenPath: token, caPath: ca) }
            #expect(noEnv?.kind == .notInCluster)
            #expect(noEnv?.description == "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined")

            let env = ["KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "443"]
            let missing = "\(dir.path)/sa/none"
            #expect(!InClusterConfig.isPossible(environment: env, tokenPath: missing))
            let noToken = expectConfigError { try InClusterConfig.load(environment: env, tokenPath: missing, caPath: ca) }
            #expect(noToken?.kind == .notInCluster)
            #expect(noToken?.description == "in-cluster: service-account token \(missing) not found")
            #expect(!InClusterConfig.isPossible(environment: env, tokenPath: "\(dir.path)/sa"))

            let noCA = expectConfigError { try InClusterConfig.load(environment: env, tokenPath: token, caPath: "\(dir.path)/none.crt") }
            #expect(noCA?.description == "in-cluster: cannot read \(dir.path)/none.crt: No such file or directory")

            let badPort = expectConfigError { try InClusterConfig.load(environment: ["KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "http"], tokenPath: token, caPath: ca) }
            #expect(badPort?.description == "KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT: invalid port")
        }

        @Test func overridesReplaceServerTokenAndCA() throws {
            try dir.write("cwd/other.crt", Fixture.otherCAPEM)
            let env = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
            let target = try InClusterConfig.load(
                environment: env, tokenPath: token, caPath: "\(dir.path)/missing.crt",
                overrides: .init(server: "https://api.test:8443", token: Fixture.otherToken, certificateAuthority: "other.crt"),
                currentDirectory: "\(dir.path)/cwd")
            #expect(target.authority == "api.test:8443")
            #expect(target.credentials.bearerToken == Fixture.otherToken)
            #expect(target.credentials.tokenFile == nil)
            #expect(target.tls.caPEM == Fixture.bytes(Fixture.otherCAPEM))
        }
    }

    @Suite("Config helpers")
    struct ConfigHelperTests {
        @Test(arguments: [
            ("/a/b/../c", "/a/c"), ("/a//b/./c/", "/a/b/c"), ("/..", "/"), ("a/../..", ".."), ("", "."), ("/", "/"),
        ])
        func cleanPaths(input: String, expected: String) {
            #expect(ConfigFiles.clean(input) == expected)
        }

        @Test func resolveAndDirectory() {
            #expect(ConfigFiles.resolve("ca.crt", against: "/etc/kube") == "/etc/kube/ca.crt")
            #expect(ConfigFiles.resolve("/abs/ca.crt", against: "/etc/kube") == "/abs/ca.crt")
            #expect(ConfigFiles.resolve("../ca.crt", against: "/etc/kube") == "/etc/ca.crt")
            #expect(ConfigFiles.directory(of: "/a/b/config") == "/a/b")
            #expect(ConfigFiles.directory(of: "/config") == "/")
        }

        @Test func mergeKeepsFirstEntriesWhole() {
            var first = Kubeconfig(
                clusters: ["c": KubeconfigCluster(origin: "/1", server: "https://one")], files: ["/1"])
            let second = Kubeconfig(
                clusters: [
                    "c": KubeconfigCluster(origin: "/2", server: "https://two", tlsServerName: "x"),
                    "d": KubeconfigCluster(origin: "/2", server: "https://d"),
                ],
                currentContext: "ctx", currentContextOrigin: "/2", files: ["/2"])
            first.merge(later: second)
            #expect(first.clusters["c"] == KubeconfigCluster(origin: "/1", server: "https://one"))
            #expect(first.clusters["d"]?.origin == "/2")
            #expect(first.currentContext == "ctx")
            #expect(first.currentContextOrigin == "/2")
            #expect(first.files == ["/1", "/2"])
        }
    }
}
