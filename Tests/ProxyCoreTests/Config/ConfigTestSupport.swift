import Foundation
import Testing

@testable import ProxyCore

/// Namespace for the Config/ suites, so `swift test --filter Config` selects them all.
@Suite("Config") enum ConfigTests {}

/// A fresh directory under the system temp dir, removed when the value is released. Kubeconfig fixtures are written
/// here at test time so relative paths and missing files can be arranged per test.
final class TempDir {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.path
        path = ConfigFiles.clean("\(base)/proxyd-config-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `contents` to `relative` (creating directories) and returns the absolute path.
    @discardableResult
    func write(_ relative: String, _ contents: String) throws -> String {
        let full = "\(path)/\(relative)"
        try FileManager.default.createDirectory(
            atPath: ConfigFiles.directory(of: full), withIntermediateDirectories: true)
        try Data(contents.utf8).write(to: URL(fileURLWithPath: full))
        return full
    }

    func mkdir(_ relative: String) throws -> String {
        let full = "\(path)/\(relative)"
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        return full
    }
}

enum Fixture {
    static let caPEM = "-----BEGIN CERTIFICATE-----\nQ0EtQ0VSVA==\n-----END CERTIFICATE-----\n"
    static let certPEM = "-----BEGIN CERTIFICATE-----\nQ0xJRU5ULUNFUlQ=\n-----END CERTIFICATE-----\n"
    static let keyPEM = "-----BEGIN PRIVATE KEY-----\nU0VDUkVULUtFWS1CWVRFUw==\n-----END PRIVATE KEY-----\n"
    static let otherCAPEM = "-----BEGIN CERTIFICATE-----\nT1RIRVItQ0E=\n-----END CERTIFICATE-----\n"

    static let token = "s3cr3t-token-value-1234"
    static let otherToken = "0ther-s3cr3t-token-5678"
    static let password = "hunter2-pass-word"

    /// Secret strings that must never show up in error messages or descriptions.
    static var secrets: [String] {
        [token, otherToken, password, base64(keyPEM), "U0VDUkVULUtFWS1CWVRFUw", "SECRET-KEY-BYTES"]
    }

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// A minimal single-context kubeconfig.
    static func simple(
        server: String = "https://api.example.test:6443",
        clusterExtra: String = "    certificate-authority-data: \(base64(caPEM))",
        userExtra: String = "    token: \(token)"
    ) -> String {
        """
        apiVersion: v1
        kind: Config
        preferences: {}
        current-context: dev
        clusters:
        - name: c
          cluster:
            server: \(server)
        \(clusterExtra)
        users:
        - name: alice
          user:
        \(userExtra)
        contexts:
        - name: dev
          context:
            cluster: c
            user: alice
            namespace: default
        """
    }
}

/// Loads with an explicit `--kubeconfig` and cwd "/" unless told otherwise.
func loadTarget(
    _ file: String?,
    environment: [String: String] = [:],
    selection: KubeconfigSelection = .init(),
    overrides: KubeconfigOverrides = .init(),
    cwd: String = "/"
) throws(ConfigError) -> UpstreamTarget {
    try KubeconfigLoader.load(
        explicitPath: file, environment: environment, selection: selection, overrides: overrides,
        currentDirectory: cwd)
}

/// Runs `body`, expects a `ConfigError`, checks no secret leaks into its description, and returns it.
func expectConfigError(
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> UpstreamTarget
) -> ConfigError? {
    do {
        let target = try body()
        Issue.record("expected a ConfigError, got \(target)", sourceLocation: sourceLocation)
        return nil
    } catch let error as ConfigError {
        for secret in Fixture.secrets {
            #expect(!error.description.contains(secret), "secret leaked: \(error)", sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a ConfigError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
